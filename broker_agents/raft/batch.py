"""Proposal batches: many proposals in one request, one reply carrying each one's answer.

Why: at 64 concurrent clients the leader's CPU went to messages, not to Raft (TLS writes
and nats-py's per-message path led its profile; the core and state machine took a few
percent). Clients on one connection coalesce the proposals issued in one loop turn
(``coalesce.py``); a member steps each as its own ``Propose`` -- same request id, same
dedup entry, same result as if sent alone -- and answers the batch once all are decided.

Wire (same subjects, same permission as a single proposal; JSON or msgpack):

    request  {"batch": [{"command": ..., "request_id": "..."}, ...]}
    reply    {"results": [{"result": ..., "index": n} | <error payload>, ...], "leader": L}
             or one error payload for the whole batch (malformed, unavailable, ...)

A batch grants nothing a single proposal does not: every item names a command and a
request id as a single one would, passes the same ``CommandCheck``, and the request comes
over the same subject under the same client permission. Refused outright (one structured
error, counted): an empty batch, more than ``MAX_BATCH_ITEMS`` items, an item that is not
a proposal, an item without a request id, or one request id twice.
"""

from __future__ import annotations

import time
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.commands import CommandCheck

BATCH = "batch"
"""The request field that makes a proposal request a batch."""

MAX_BATCH_ITEMS = 1024
"""Items a member takes in one batch (clients send at most ``coalesce.MAX_ITEMS``)."""


def parse_batch(items: Any, size: int, as_json: bool,
                check: CommandCheck) -> list[tuple[Any, str]]:
    """``(command, request_id)`` of each item of ``body["batch"]``, decoded from a request
    of ``size`` bytes; raises ``BrokerError`` (``bad_request``, or what ``check`` says)."""
    if type(items) is not list or not items:
        raise BrokerError(ErrorCode.BAD_REQUEST, "batch must be a non-empty list",
                          {"reason": "bad_batch"})
    if len(items) > MAX_BATCH_ITEMS:
        raise BrokerError(ErrorCode.BAD_REQUEST,
                          f"a batch holds at most {MAX_BATCH_ITEMS} proposals",
                          {"reason": "too_many", "limit": MAX_BATCH_ITEMS})
    out: list[tuple[Any, str]] = []
    seen: set[str] = set()
    for k, item in enumerate(items):
        if type(item) is not dict or "command" not in item:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"batch item {k} is not a proposal",
                              {"reason": "bad_item", "item": k})
        rid = item.get("request_id")
        if type(rid) is not str:
            raise BrokerError(ErrorCode.BAD_REQUEST,
                              f"batch item {k} needs a string request_id",
                              {"reason": "bad_item", "item": k})
        if rid in seen:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"request id {rid!r} twice in a batch",
                              {"reason": "duplicate_id", "item": k})
        seen.add(rid)
        check.request_id(rid, valid_utf8=not as_json)
        # every item is smaller than the whole request: the cheap msgpack bound holds
        check.decoded(item["command"], size, from_json=as_json)
        out.append((item["command"], rid))
    return out


class PendingBatch:
    """One batch request a member holds: its reply subject, the answers so far, and
    whether it was relayed whole to the leader (then the leader answers it)."""

    __slots__ = ("answers", "as_json", "created", "done", "left", "request", "subject")

    def __init__(self, subject: str, as_json: bool, request: Any, n: int) -> None:
        self.subject, self.as_json, self.request = subject, as_json, request
        self.answers: list[Any] = [None] * n
        self.left = n
        self.done = False  # answered, relayed, or failed: nothing more goes out
        self.created = time.monotonic()

    def fill(self, k: int, answer: Any) -> bool:
        """Record item ``k``'s answer; True when this completes the batch."""
        if self.done or self.answers[k] is not None:
            return False
        self.answers[k] = answer
        self.left -= 1
        if self.left == 0:
            self.done = True
            return True
        return False

    def reply(self, leader: str | None) -> dict[str, Any]:
        return {"results": self.answers, "leader": leader}


class Slot:
    """A waiter for one item of a ``PendingBatch`` (``replies.Waiters`` holds it)."""

    __slots__ = ("batch", "created", "k")

    def __init__(self, batch: PendingBatch, k: int) -> None:
        self.batch, self.k, self.created = batch, k, batch.created


def split_reply(reply: Any, n: int) -> list[dict[str, Any]]:
    """A batch reply as ``n`` single replies (what a lone proposal would have heard):
    a result with the leader hint, or an error payload (a batch-wide error for each)."""
    err = BrokerError.from_payload(reply)
    if err is not None:
        return [reply] * n
    results = reply.get("results") if type(reply) is dict else None
    if type(results) is not list or len(results) != n:
        bad = BrokerError(ErrorCode.MALFORMED, "batch reply does not match the batch")
        return [bad.to_payload()] * n
    leader = reply.get("leader")
    out: list[dict[str, Any]] = []
    for item in results:
        if type(item) is not dict:
            item = BrokerError(ErrorCode.MALFORMED, "batch reply item is not a map").to_payload()
        elif "error" not in item:
            item = {**item, "leader": leader}
        out.append(item)
    return out
