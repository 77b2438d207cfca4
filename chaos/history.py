"""Operation histories: what each client invoked, and how it ended.

Every operation is an ``invoke`` record followed by at most one completion: ``ok`` (it
happened, with its result), ``fail`` (it certainly did not happen) or ``unknown`` (a
timeout or lost connection: it may or may not have happened). Timestamps come from a
monotonic clock. Histories serialise to JSON Lines, one record per line.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

RecordType = Literal["invoke", "ok", "fail", "unknown"]


class Record(BaseModel):
    """One line of a history."""

    index: int
    op_id: int
    process: str
    type: RecordType
    f: str
    key: str | None = None
    value: Any = None
    time: float
    error: str | None = None


class Operation(BaseModel):
    """An invoke joined with its completion (``status`` "unknown" if none was recorded)."""

    op_id: int
    process: str
    f: str
    key: str | None
    args: Any
    result: Any
    status: Literal["ok", "fail", "unknown"]
    invoke_time: float
    complete_time: float  # math.inf when the outcome is unknown
    error: str | None = None

    def describe(self) -> str:
        shown = f"{self.f}({self.key}, {self.args!r})" if self.key is not None else (
            f"{self.f}({self.args!r})")
        return f"op {self.op_id} [{self.process}] {shown} -> {self.status} {self.result!r}"


class History:
    """A thread-safe recorder; ``clock`` is injectable so tests control time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.records: list[Record] = []
        self._open: dict[int, Record] = {}
        self._lock = threading.Lock()
        self._next_id = 0

    def _add(self, **fields: Any) -> Record:
        rec = Record(index=len(self.records), time=self.clock(), **fields)
        self.records.append(rec)
        return rec

    def invoke(self, process: str, f: str, value: Any = None, key: str | None = None) -> int:
        """Record an invocation; returns the op id its completion must cite."""
        with self._lock:
            op_id = self._next_id
            self._next_id += 1
            rec = self._add(op_id=op_id, process=process, type="invoke", f=f, key=key,
                            value=value)
            self._open[op_id] = rec
            return op_id

    def _complete(self, op_id: int, kind: RecordType, value: Any, error: str | None) -> None:
        with self._lock:
            inv = self._open.pop(op_id, None)
            if inv is None:
                raise ValueError(f"op {op_id} is not open (completed twice or never invoked)")
            self._add(op_id=op_id, process=inv.process, type=kind, f=inv.f, key=inv.key,
                      value=value, error=error)

    def ok(self, op_id: int, value: Any = None) -> None:
        self._complete(op_id, "ok", value, None)

    def fail(self, op_id: int, error: str = "", value: Any = None) -> None:
        self._complete(op_id, "fail", value, error or None)

    def unknown(self, op_id: int, error: str = "") -> None:
        self._complete(op_id, "unknown", None, error or None)

    def operations(self) -> list[Operation]:
        return operations(self.records)

    def counts(self) -> dict[str, int]:
        ops = self.operations()
        return {"invoked": len(ops),
                "ok": sum(o.status == "ok" for o in ops),
                "failed": sum(o.status == "fail" for o in ops),
                "unknown": sum(o.status == "unknown" for o in ops)}

    def to_jsonl(self, path: Path | None = None) -> str:
        text = "".join(r.model_dump_json() + "\n" for r in self.records)
        if path is not None:
            path.write_text(text)
        return text

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        hist = cls()
        for line in text.splitlines():
            if line.strip():
                rec = Record.model_validate(json.loads(line))
                hist.records.append(rec)
                if rec.type == "invoke":
                    hist._open[rec.op_id] = rec
                else:
                    hist._open.pop(rec.op_id, None)
                hist._next_id = max(hist._next_id, rec.op_id + 1)
        return hist


def operations(records: Iterable[Record]) -> list[Operation]:
    """Join invokes with completions, in invoke order; open invokes become unknown."""
    invokes: dict[int, Record] = {}
    done: dict[int, Record] = {}
    for rec in records:
        if rec.type == "invoke":
            invokes[rec.op_id] = rec
        else:
            done[rec.op_id] = rec
    result = []
    for op_id, inv in sorted(invokes.items(), key=lambda kv: (kv[1].time, kv[1].index)):
        end = done.get(op_id)
        status = "unknown" if end is None else end.type
        finished = status in ("ok", "fail")
        result.append(Operation(
            op_id=op_id, process=inv.process, f=inv.f, key=inv.key, args=inv.value,
            result=end.value if end is not None else None,
            status=status,
            invoke_time=inv.time,
            complete_time=end.time if (end is not None and finished) else math.inf,
            error=end.error if end is not None else None,
        ))
    return result
