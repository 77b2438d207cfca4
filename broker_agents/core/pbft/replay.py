"""Which signed messages a replica has seen, to tell a first copy from a replay and from
an equivocation.

A message is keyed by its signer and the slot it speaks for (a vote's view and sequence,
a request's client and id, a view change's view, a new view's view). The same signed
body again is a replay (harmless, ignored); a different body under the same key is an
equivocation: a faulty signer saying two things.
"""

from __future__ import annotations

from broker_agents.core.pbft.config import Counters
from broker_agents.core.pbft.messages import (
    Commit,
    NewView,
    PbftMessage,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
    signable,
)


class ReplayGuard:
    def __init__(self, counters: Counters) -> None:
        self._counters = counters  # replays and equivocations are counted here
        self._seen: dict[tuple[object, ...], bytes] = {}

    def first_time(self, msg: PbftMessage) -> bool | None:
        """True the first time, False for an exact replay, None for an equivocation.
        Messages without a slot (fetches, catch-ups, replies) are always first."""
        key: tuple[object, ...]
        if isinstance(msg, PrePrepare | Prepare | Commit):
            key = (msg.type, msg.sender, msg.view, msg.seq)
        elif isinstance(msg, Request):
            key = (msg.type, msg.client, msg.request_id)
        elif isinstance(msg, ViewChange):
            key = (msg.type, msg.sender, msg.new_view)
        elif isinstance(msg, NewView):
            key = (msg.type, msg.view)
        else:
            return True
        body = signable(msg)
        prior = self._seen.setdefault(key, body)
        if prior != body:
            self._counters.equivocations += 1
            return None
        if prior is not body:
            self._counters.replayed += 1
            return False
        return True
