"""``ReplyCache``: a redelivered request's answer, by requester and message id."""

from __future__ import annotations

from broker_agents.core.identity import Principal, Role
from broker_agents.replycache import ReplyCache, key_of


def test_the_requester_is_the_signer_else_the_reply_subject() -> None:
    alice = Principal(name="alice", role=Role.CLIENT, public_key="UA")
    node = Principal(name="node", role=Role.NODE, public_key="UN", acting_for="agent-1")
    assert key_of(alice, "_INBOX.x.1", "m-1") == ("alice", "m-1")
    assert key_of(node, "_INBOX.x.1", "m-1") == ("agent-1", "m-1")  # whom it speaks for
    assert key_of(None, "_INBOX.x.1", "m-1") == ("_INBOX.x.1", "m-1")
    assert key_of(alice, "_INBOX.x.1", "m-1") != key_of(None, "alice", "m-2")


def test_answers_are_kept_up_to_the_size_oldest_forgotten_first() -> None:
    cache = ReplyCache(size=2)
    for i in range(3):
        cache.remember(("alice", f"m-{i}"), b"%d" % i)
    assert cache.get(("alice", "m-0")) is None
    assert cache.get(("alice", "m-2")) == b"2"
    assert cache.get(("bob", "m-2")) is None  # another requester's id primes nothing
