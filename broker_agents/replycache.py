"""The answers an agent already sent, so a redelivered request gets the same answer
instead of being handled twice (``runtime.AgentRunner``).

Keyed by (requester, message id), where the requester is the request's verified signer,
else its reply subject: nobody can prime another requester's answer. A reply subject is
unguessable, so an unsigned request's cached answer is reachable only by a redelivery of
that same request; its inbox prefix would not do, since NATS does not check a reply subject
against the publisher's permissions. Only answers are kept: an unsigned one-way message
(no reply) can never find itself here. The oldest are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from broker_agents.core.identity import Principal

RECENT_IDS = 1024

Key = tuple[str | None, str]


def key_of(principal: Principal | None, reply: str | None, msg_id: str) -> Key:
    """Whose entry a request's answer is, and under which message id."""
    return (principal.identity if principal is not None else reply, msg_id)


class ReplyCache:
    def __init__(self, size: int = RECENT_IDS) -> None:
        self.size = size
        self._answers: OrderedDict[Key, bytes] = OrderedDict()

    def get(self, key: Key) -> bytes | None:
        return self._answers.get(key)

    def remember(self, key: Key, reply: bytes) -> None:
        self._answers[key] = reply
        if len(self._answers) > self.size:
            self._answers.popitem(last=False)
