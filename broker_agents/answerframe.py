"""The batch-answer frame: many participants' answers to one fan-out ask in one message.

Why: a node that hosts 50 of a vote's participants used to publish 50 answers, and the
asker's connection paid for 50 deliveries. Now a node's answers that are ready together
travel in one message (``broker_agents.fanout``), published on the ask's reply subject
``<inbox>.<batch>`` with the header ``Ba-Answers: 1``. This module is the one home of its
body's codec. (Not to be confused with ``broker_agents.batching``'s ``Ba-Batch`` frames:
one-way envelopes to one agent inbox, without indexes or headers.)

Body: a msgpack array of entries ``[index, data, headers or nil]``; ``data`` and
``headers`` are byte-for-byte what the single answer on ``<inbox>.<batch>-<index>`` would
have carried (a signature inside them covers that per-participant subject), so the asker
handles each entry exactly as that single answer (``broker_agents.gather``).

``decode`` refuses the whole frame (``BrokerError(malformed)``) for anything else: not
msgpack, not an array, more entries than participants or than ``MAX_ENTRIES``, an entry
of the wrong shape, an index out of range or named twice, headers that are not a small
string map. A frame is one node's word; a part of a broken one is not trusted.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from broker_agents.core.errors import BrokerError, ErrorCode

HEADER = "Ba-Answers"
MAX_ENTRIES = 10_000  # a fan-out ask names at most this many (fanout.MAX_PARTICIPANTS)
MAX_HEADERS = 64  # headers per entry: an answer carries a few (content type, signature)
ENTRY_OVERHEAD = 16  # bytes an entry's framing adds at most besides data and headers

Headers = dict[str, str]
Entry = tuple[int, bytes, Headers | None]


def encode(entries: Sequence[Entry]) -> bytes:
    """The frame carrying ``entries`` (as built by the answering node: not re-checked)."""
    return msgpack.packb(entries, use_bin_type=True)  # type: ignore[no-any-return]


def entry_size(data: bytes, headers: Headers | None) -> int:
    """An upper bound of the bytes one entry adds to a frame (to keep frames in bounds)."""
    size = len(data) + ENTRY_OVERHEAD
    if headers:
        size += sum(len(k.encode()) + len(v.encode()) + 10 for k, v in headers.items())
    return size


def _malformed(why: str) -> BrokerError:
    return BrokerError(ErrorCode.MALFORMED, f"bad batch frame: {why}")


def decode(body: bytes, participants: int) -> list[Entry]:
    """The entries of a frame answering an ask to ``participants``; refused otherwise."""
    limit = min(participants, MAX_ENTRIES)
    try:
        raw = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=True,
                              max_array_len=max(limit, 3), max_map_len=MAX_HEADERS,
                              max_bin_len=len(body), max_str_len=len(body),
                              max_ext_len=0)
    except Exception as exc:  # any msgpack error, extra data, a limit exceeded
        raise _malformed(f"not a msgpack frame ({type(exc).__name__})") from None
    if type(raw) is not tuple or not raw:
        raise _malformed("not a non-empty array")
    if len(raw) > limit:
        raise _malformed(f"{len(raw)} entries for {participants} participants")
    seen: set[int] = set()
    out: list[Entry] = []
    for entry in raw:
        if type(entry) is not tuple or len(entry) != 3:
            raise _malformed("an entry is not [index, data, headers]")
        index, data, headers = entry
        if type(index) is not int or not 0 <= index < participants:
            raise _malformed(f"index {str(index)[:20]} out of range")
        if index in seen:
            raise _malformed(f"index {index} named twice")
        seen.add(index)
        if type(data) is not bytes:
            raise _malformed(f"entry {index}: data is not bytes")
        if headers is not None and (type(headers) is not dict or not all(
                type(k) is str and type(v) is str for k, v in headers.items())):
            raise _malformed(f"entry {index}: headers are not a string map")
        out.append((index, data, headers))
    return out
