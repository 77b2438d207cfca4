"""What may enter a Raft log: a command that storage can encode, within a size bound.

A command the leader cannot encode stops it for good: its log write fails, and the next
leader inherits the same entry. So every proposal is checked with the packer the log is
written with (``storage.stored_packer``) before the core sees it, and refused with a
structured ``validation_error`` (``too_large`` past the bound) naming why.

What each source costs (the commit path is benchmarked; nothing is encoded twice there):

- a msgpack request: whatever msgpack decoded, msgpack encodes again (ints fit 64 bits,
  strings are valid UTF-8, nesting stays within the decoder's stack; a property test
  holds us to it), and the stored form is at most twice the payload (a float32 becomes a
  float64: 5 -> 9 bytes). So a payload of at most half the bound needs no encoding at all;
  a larger one is encoded once to measure it.
- a JSON request: JSON carries integers of any size and lone surrogates, so it is encoded
  once.
- an in-process proposal (any Python object): encoded and decoded once, and the decoded
  form is what is proposed, so the leader applies exactly what followers and a restart
  will read back (a tuple becomes a list; a tuple used as a map key is refused, since it
  could not be read back).
"""

from __future__ import annotations

from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.storage import stored_packer, unpack_stored

DEFAULT_MAX_COMMAND_BYTES = 64 * 1024
"""The default bound on a stored command: far below NATS's 1 MiB max payload, so an
append still carries it with room to spare."""

MAX_REQUEST_ID_CHARS = 256
"""Request ids live in every log entry and in the replicated dedup table."""

_WHY = (  # how the packer says it cannot encode something -> details["reason"]
    (OverflowError, "integer_out_of_range"),  # past 64 bits, either sign
    (UnicodeEncodeError, "invalid_string"),  # a lone surrogate
    (TypeError, "unsupported_type"),  # a set, an object...
    (ValueError, "too_deep"),  # past the packer's nesting limit
)


def _refusal(exc: Exception, what: str) -> BrokerError:
    reason = next((why for kind, why in _WHY if isinstance(exc, kind)), "unencodable")
    return BrokerError(ErrorCode.VALIDATION, f"the {what} cannot be stored: {exc}",
                       {"reason": reason})


class CommandCheck:
    """Checks proposals against one member's bound. Event-loop only (one packer)."""

    __slots__ = ("_packer", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_command_bytes must be positive")
        self.max_bytes = max_bytes
        self._packer = stored_packer()

    def request_id(self, rid: str, *, valid_utf8: bool = False) -> None:
        """A request id that can be stored. ``valid_utf8``: it was decoded from msgpack,
        which only yields valid strings (JSON and Python strings may hold surrogates)."""
        if len(rid) > MAX_REQUEST_ID_CHARS:
            raise BrokerError(ErrorCode.VALIDATION,
                              f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters",
                              {"reason": "request_id_too_long"})
        if not valid_utf8 and not rid.isascii():
            try:
                rid.encode()
            except UnicodeEncodeError as exc:
                raise _refusal(exc, "request_id") from None

    def decoded(self, command: Any, payload_size: int, *, from_json: bool) -> None:
        """A command decoded from a request of ``payload_size`` bytes."""
        if not from_json and payload_size * 2 <= self.max_bytes:
            return  # msgpack in, msgpack out, within the bound (see the module docstring)
        self._measure(self._pack(command))

    def native(self, command: Any) -> Any:
        """An in-process command as it will be stored and read back (propose that)."""
        packed = self._pack(command)
        self._measure(packed)
        try:
            return unpack_stored(packed)
        except (TypeError, ValueError) as exc:  # e.g. a tuple as a map key
            raise _refusal(exc, "command") from None

    def forwarded(self, command: Any, rid: str) -> bool:
        """A command a peer hands the leader: storable and within the bound (decoded
        from msgpack, so its request id is a valid string)."""
        try:
            self.request_id(rid, valid_utf8=True)
            self._measure(self._pack(command))
        except BrokerError:
            return False
        return True

    def _pack(self, command: Any) -> bytes:
        try:
            packed: bytes = self._packer.pack(command)
        except (OverflowError, UnicodeEncodeError, TypeError, ValueError) as exc:
            raise _refusal(exc, "command") from None
        return packed

    def _measure(self, packed: bytes) -> None:
        if len(packed) > self.max_bytes:
            raise BrokerError(ErrorCode.TOO_LARGE,
                              f"the command takes {len(packed)} bytes; the limit is "
                              f"{self.max_bytes}", {"size": len(packed),
                                                    "limit": self.max_bytes})
