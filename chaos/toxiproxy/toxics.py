"""Toxic definitions and their effect on one direction of one proxied connection.

A toxic sees the stream as chunks (bytes plus the time they were read) and hands zero or
more chunks on to the next toxic through ``out``. Toxics chain in the order they were
added, as in Toxiproxy. Timer-driven behaviour (``timeout`` closing an idle link) is armed
by the link, not here, because it must fire even when no data flows.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker_agents.core.errors import BrokerError, CodedError, ErrorCode

STREAMS = ("upstream", "downstream")

# Attribute names and defaults per toxic type (all attributes are integers in Toxiproxy).
TOXIC_TYPES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}


class ToxicError(BrokerError):
    """A toxic definition the API must reject; carries the HTTP status and message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, message, {"status": status})
        self.status = status


class LinkClose(CodedError):
    """Raised by a toxic to end the whole connection (``reset`` = TCP RST, not FIN)."""

    CODE = ErrorCode.CLOSED

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close", {"reset": reset})
        self.reset = reset


@dataclass
class Chunk:
    data: bytes
    ts: float  # loop time when the bytes were read from the source socket


Out = Callable[[Chunk], Awaitable[None]]


@dataclass
class Toxic:
    """One toxic as the API shows it: name, type, stream, toxicity, attributes."""

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)
    version: int = 0  # bumped on update so links re-arm timers

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, body: Any) -> Toxic:
        """Validate a create body (Toxiproxy's defaults: downstream, toxicity 1.0)."""
        if not isinstance(body, dict):
            raise ToxicError("bad request body")
        ttype = body.get("type")
        if not isinstance(ttype, str) or not ttype:
            raise ToxicError("missing required field: type")
        if ttype not in TOXIC_TYPES:
            raise ToxicError("invalid toxic type")
        stream = body.get("stream") or "downstream"
        if stream not in STREAMS:
            raise ToxicError("stream was invalid, can be either upstream or downstream")
        name = body.get("name") or f"{ttype}_{stream}"
        toxic = cls(name=str(name), type=ttype, stream=stream,
                    attributes=dict(TOXIC_TYPES[ttype]))
        toxic.update(body)
        return toxic

    def update(self, body: Any) -> None:
        """Merge toxicity and attributes from an update body."""
        if not isinstance(body, dict):
            raise ToxicError("bad request body")
        if "toxicity" in body and body["toxicity"] is not None:
            try:
                self.toxicity = float(body["toxicity"])
            except (TypeError, ValueError) as exc:
                raise ToxicError("bad request body: toxicity") from exc
        attrs = body.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ToxicError("bad request body: attributes")
        for key, value in attrs.items():
            if key not in TOXIC_TYPES[self.type]:
                continue  # Toxiproxy ignores unknown attribute names
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ToxicError(f"bad request body: attribute {key}")
            self.attributes[key] = int(value)
        self.version += 1


class ToxicState:
    """Per-link, per-toxic mutable state (limit_data's byte count survives updates)."""

    def __init__(self) -> None:
        self.transmitted = 0


async def pipe(toxic: Toxic, chunk: Chunk, out: Out, state: ToxicState,
               rng: random.Random) -> None:
    """Apply ``toxic`` to one chunk; call ``out`` for what passes on."""
    a = toxic.attributes
    loop = asyncio.get_running_loop()
    kind = toxic.type
    if kind == "latency":
        jitter = a.get("jitter", 0)
        delay = a.get("latency", 0) + (rng.randint(-jitter, jitter) if jitter > 0 else 0)
        wait = chunk.ts + max(delay, 0) / 1000.0 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # sleep-ok: the latency toxic is a deliberate delay
        await out(chunk)
    elif kind == "bandwidth":
        await _bandwidth(a.get("rate", 0), chunk, out)
    elif kind == "slicer":
        await _slicer(a, chunk, out, rng)
    elif kind == "limit_data":
        remaining = a.get("bytes", 0) - state.transmitted
        data = chunk.data[: max(remaining, 0)]
        if data:
            state.transmitted += len(data)
            await out(Chunk(data, chunk.ts))
        if a.get("bytes", 0) - state.transmitted <= 0:
            raise LinkClose()
    elif kind == "timeout":
        return  # drop the data on the ground; the link's timer closes the connection
    elif kind == "reset_peer":
        timeout = a.get("timeout", 0)
        if timeout > 0:
            await asyncio.sleep(timeout / 1000.0)  # sleep-ok: the toxic's documented delay
        raise LinkClose(reset=True)
    else:  # slow_close only acts at EOF
        await out(chunk)


async def _bandwidth(rate_kb: int, chunk: Chunk, out: Out) -> None:
    if rate_kb <= 0:
        await out(chunk)
        return
    per_tick = max(rate_kb * 100, 1)  # bytes per 100 ms, so big chunks trickle out
    data = chunk.data
    for start in range(0, len(data), per_tick):
        piece = data[start:start + per_tick]
        await asyncio.sleep(len(piece) / (rate_kb * 1000.0))  # sleep-ok: rate limiting
        await out(Chunk(piece, chunk.ts))


async def _slicer(a: dict[str, int], chunk: Chunk, out: Out, rng: random.Random) -> None:
    avg, var, delay_us = a.get("average_size", 0), a.get("size_variation", 0), a.get("delay", 0)
    if avg <= 0:
        await out(chunk)
        return
    data = chunk.data
    pos = 0
    while pos < len(data):
        size = avg + (rng.randint(-var, var) if var > 0 else 0)
        size = max(size, 1)
        await out(Chunk(data[pos:pos + size], chunk.ts))
        pos += size
        if delay_us > 0 and pos < len(data):
            await asyncio.sleep(delay_us / 1e6)  # sleep-ok: the slicer's inter-packet delay
