"""PBFT group configuration, the effects a replica hands its driver, and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.pbft.messages import PbftMessage, Request


def max_faulty(n: int) -> int:
    """The largest f that n replicas tolerate (n >= 3f + 1)."""
    return max(0, (n - 1) // 3)


def check_group_size(n: int, f: int | None = None) -> int:
    """The f to run with; ``too_few_participants`` says how many are needed and present."""
    want = f if f is not None else max(1, max_faulty(n))
    if want < 1:
        raise BrokerError(ErrorCode.BAD_REQUEST, "f must be at least 1", {"f": want})
    needed = 3 * want + 1
    if n < needed:
        raise BrokerError(
            ErrorCode.TOO_FEW_PARTICIPANTS,
            f"PBFT tolerating f={want} needs at least {needed} replicas, have {n}",
            {"needed": needed, "have": n, "f": want},
        )
    return want


@dataclass(frozen=True)
class PbftConfig:
    """One replica's view of the group. Times are in ticks of the driver's clock."""

    replica_id: str
    replicas: tuple[str, ...]
    f: int | None = None
    view_timeout: int = 20
    """Ticks a backup waits for a pending request before suspecting the primary."""
    retransmit_every: int = 4
    """Ticks between re-sends of undecided work (the network may drop anything)."""
    max_backoff: int = 3
    """View-change timeouts double per failed attempt, at most this many times."""
    window: int = 32
    """A primary keeps at most this many sequences beyond the last executed one."""
    catch_up_batch: int = 16
    """At most this many commit certificates per catch-up reply."""

    def __post_init__(self) -> None:
        if len(set(self.replicas)) != len(self.replicas):
            raise BrokerError(ErrorCode.BAD_REQUEST, "replica ids must be distinct")
        if self.replica_id not in self.replicas:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"{self.replica_id} is not a replica")
        object.__setattr__(self, "f", check_group_size(len(self.replicas), self.f))

    @property
    def faults(self) -> int:
        assert self.f is not None
        return self.f

    @property
    def quorum(self) -> int:
        return 2 * self.faults + 1

    def primary(self, view: int) -> str:
        return self.replicas[view % len(self.replicas)]


@dataclass(frozen=True)
class Broadcast:
    """Send to every other replica."""

    msg: PbftMessage


@dataclass(frozen=True)
class Send:
    """Send to one member (a replica, or the client for replies)."""

    to: str
    msg: PbftMessage


@dataclass(frozen=True)
class Decide:
    """Sequence ``seq`` is decided (executed in order); ``request`` None is a no-op."""

    seq: int
    view: int
    digest: str
    request: Request | None


@dataclass(frozen=True)
class ViewEntered:
    view: int
    primary: str


Effect = Broadcast | Send | Decide | ViewEntered


@dataclass
class Counters:
    """Rejected or notable inputs, by kind; never reset."""

    forged: int = 0
    """Bad signature, or a signer that is not who it claims / not a member."""
    replayed: int = 0
    """An exact copy of a message already processed."""
    equivocations: int = 0
    """Same signer and slot, conflicting content."""
    stale: int = 0
    """For a view we have left."""
    invalid: int = 0
    """Well-signed but breaks the protocol (wrong primary, bad certificate, ...)."""
    buffered: int = 0
    """Held for a view we have not reached yet."""
    extra: dict[str, int] = field(default_factory=dict)
