"""A Ready's peer messages as NATS payloads: one msgpack list per destination, each within
the server's max payload.

Commands are bounded one by one, but an append carries up to ``max_append_entries`` of
them: thirty 60 KB commands proposed together pass NATS's 1 MiB, the publish fails, and
every retry of that append fails again -- the group would never commit again. So a batch
that encodes past the limit is sent as several payloads, and a message too large on its
own is split (``wire.split_message``: an append into consecutive appends). The common case
costs one length comparison: the batch is encoded once, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from broker_agents.codec import encode
from broker_agents.core.raft.messages import Message
from broker_agents.core.raft.wire import encode_message, split_message

_ARRAY_HEADER_MAX = 5  # bytes a msgpack array header takes at most


def peer_payloads(messages: Sequence[Message], limit: int
                  ) -> tuple[list[tuple[str, bytes]], list[Message]]:
    """``(destination, payload)`` pairs within ``limit`` bytes, and the messages that no
    split could bring under it (not sent: the caller logs them)."""
    batches: dict[str, list[Message]] = {}
    for m in messages:
        batches.setdefault(m.dst, []).append(m)
    out: list[tuple[str, bytes]] = []
    unsendable: list[Message] = []
    for dst, batch in batches.items():
        data = encode([encode_message(m) for m in batch])
        if len(data) <= limit:
            out.append((dst, data))
        else:
            out.extend((dst, p) for p in _within(batch, limit, unsendable))
    return out, unsendable


def _within(batch: list[Message], limit: int, unsendable: list[Message]) -> list[bytes]:
    """The batch re-cut into lists whose encoding fits ``limit`` (each message encoded
    once; a list's bytes are its header followed by its items' bytes)."""
    pieces: list[bytes] = []
    todo = list(reversed(batch))
    while todo:
        m = todo.pop()
        data = encode(encode_message(m))
        if len(data) + _ARRAY_HEADER_MAX <= limit:
            pieces.append(data)
            continue
        halves = split_message(m)
        if halves is None:
            unsendable.append(m)
        else:
            todo.extend(reversed(halves))
    payloads: list[bytes] = []
    current: list[bytes] = []
    size = _ARRAY_HEADER_MAX
    for piece in pieces:
        if current and size + len(piece) > limit:
            payloads.append(_array(current))
            current, size = [], _ARRAY_HEADER_MAX
        current.append(piece)
        size += len(piece)
    if current:
        payloads.append(_array(current))
    return payloads


def _array(items: list[bytes]) -> bytes:
    header: bytes = msgpack.Packer().pack_array_header(len(items))
    return header + b"".join(items)
