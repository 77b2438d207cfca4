"""Decisions of the one local KV mirror (``broker_agents/kvfeed.py``): is the watch dead or
lagging, has the stream regressed, is a listing complete.

A KV watch can die silently (nats-py, around reconnects) and a listing can end early
(nats.py #842/#995: the end-of-snapshot marker may come before the snapshot's entries,
and a stream changing leaders may answer from a replica that is behind). Neither can be
seen from the watch itself, so the driver compares what it applied with the stream's
state on a short timer and hands the readings in here; time is the driver's monotonic
clock, passed in.

``FeedWatch`` (machine form, ``core/machine.py``): events ``Checked`` (the stream's last
sequence, read now), ``CheckFailed`` (the status call failed or timed out),
``RelistStarted`` and ``Relisted`` (a complete listing was applied); effect
``Resync(reason)``. While a re-list is asked for or running, nothing more is asked,
except ``regressed`` (it changes what the re-list does with a low stream).

- **stalled**: the view was behind (or the stream did not answer) and has not applied
  the stream's last sequence seen when that began within ``stall_after`` seconds.
  Partial progress does not reset the clock, and a failed status call counts toward it:
  the clock runs from the first check that could not show us caught up. So a watch that
  died during a long server cut is re-listed at the first check after the heal.
- **unreachable**: the same, while no status call has answered since the clock started;
  the re-list then retries until the stream answers.
- **regressed**: the stream's last sequence stayed below what we applied for
  ``stall_after`` (the bucket was recreated). A single low answer may come from a
  replica that is behind and is not believed.

``listing_complete``: a listing is accepted only when it reaches the stream's last
sequence seen before it began, or shows as many keys as the stream held messages then
(history-1 buckets: one message per key, delete markers included), or the stream was
empty. Anything less is listed again, never reconciled to.
"""

from __future__ import annotations

from dataclasses import dataclass

STALLED = "stalled"
UNREACHABLE = "unreachable"
REGRESSED = "regressed"


@dataclass(frozen=True, slots=True)
class StreamMark:
    """The stream's state read just before a listing began."""

    last_seq: int
    messages: int


def listing_complete(mark: StreamMark, keys: int, high_water: int) -> bool:
    """Whether a listing that showed ``keys`` keys (values and delete markers) and
    revisions up to ``high_water`` covers everything the stream held at ``mark``."""
    return mark.messages == 0 or high_water >= mark.last_seq or keys >= mark.messages


@dataclass(frozen=True, slots=True)
class Checked:
    """The stream answered: its last sequence, and what the feed had applied then."""

    now: float
    last_seq: int
    applied: int


@dataclass(frozen=True, slots=True)
class CheckFailed:
    """The status call failed or timed out."""

    now: float


@dataclass(frozen=True, slots=True)
class RelistStarted:
    """The feed began a re-list (whoever asked for it)."""

    now: float


@dataclass(frozen=True, slots=True)
class Relisted:
    """A complete listing was applied: the feed is as fresh as the stream was then."""

    now: float


@dataclass(frozen=True, slots=True)
class Resync:
    """Re-list the bucket. ``behind_for``: seconds since the view was last shown caught up
    (or since the stream last answered); ``lag``: revisions behind (-1 when unknown)."""

    reason: str
    behind_for: float
    lag: int


FeedEvent = Checked | CheckFailed | RelistStarted | Relisted


class FeedWatch:
    """Tracks how long the feed has not been shown caught up; asks for a re-list."""

    def __init__(self, stall_after: float, now: float = 0.0) -> None:
        if stall_after <= 0:
            raise ValueError("stall_after must be > 0")
        self._stall_after = stall_after
        self._since: float | None = None  # first check that did not show us caught up
        self._target: int | None = None  # stream's last sequence then (None: no answer)
        self._regressed_since: float | None = None
        self._pending: str | None = None  # asked for or running, until a relist completes
        self._caught_up_at = now

    @property
    def caught_up_at(self) -> float:
        """When (driver clock) the feed was last shown to have applied the whole stream."""
        return self._caught_up_at

    def step(self, event: FeedEvent) -> list[Resync]:
        if isinstance(event, Relisted):
            self._since = self._target = self._regressed_since = None
            self._pending = None
            self._caught_up_at = event.now
            return []
        if isinstance(event, RelistStarted):
            self._pending = self._pending or "relist"
            return []
        if isinstance(event, CheckFailed):
            return self._unanswered(event.now)
        return self._checked(event.now, event.last_seq, event.applied)

    def _checked(self, now: float, last: int, applied: int) -> list[Resync]:
        if last < applied:
            # believed only when it lasts; meanwhile it shows nothing about the watch
            if self._regressed_since is None:
                self._regressed_since = now
            elif now - self._regressed_since >= self._stall_after:
                self._regressed_since = None
                return self._request(REGRESSED, now, -1)
            return self._unanswered(now)
        self._regressed_since = None
        if applied >= last:
            self._since = self._target = None
            self._caught_up_at = now
            return []
        if self._since is None:
            self._since, self._target = now, last
            return []
        if self._target is not None and applied >= self._target:
            # everything the stream held when we fell behind has arrived: alive, lagging
            self._since, self._target = now, last
            return []
        if self._target is None:
            self._target = last  # the first answer since failures started the clock
        if now - self._since >= self._stall_after:
            return self._request(STALLED, now, last - applied)
        return []

    def _unanswered(self, now: float) -> list[Resync]:
        if self._since is None:
            self._since = now
            return []
        if now - self._since >= self._stall_after:
            reason = UNREACHABLE if self._target is None else STALLED
            return self._request(reason, now, -1)
        return []

    def _request(self, reason: str, now: float, lag: int) -> list[Resync]:
        if self._pending is not None and (reason != REGRESSED or self._pending == REGRESSED):
            return []
        self._pending = reason
        since = self._since if self._since is not None else now
        return [Resync(reason, round(now - since, 3), lag)]
