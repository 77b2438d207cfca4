"""Build operations by hand, and generate linearizable register histories from a seed."""

from __future__ import annotations

import math
import random
from typing import Any

from chaos.history import Operation


def op(op_id: int, f: str, args: Any = None, result: Any = None, *, t: tuple[float, float],
       status: str = "ok", key: str | None = "k", process: str | None = None) -> Operation:
    return Operation(op_id=op_id, process=process or f"p{op_id}", f=f, key=key, args=args,
                     result=result, status=status,
                     invoke_time=t[0],
                     complete_time=math.inf if status == "unknown" else t[1])


def linearizable_history(rng: random.Random, n_ops: int, processes: int = 4,
                         keys: int = 1, unknown_rate: float = 0.05) -> list[Operation]:
    """A history that is linearizable by construction (each op takes effect at a point
    inside its interval); unknown ops take effect or not at random."""
    planned = []
    clocks = [0.0] * processes
    for op_id in range(n_ops):
        p = rng.randrange(processes)
        start = clocks[p] + rng.uniform(0.0, 1.0)
        end = start + rng.uniform(0.1, 3.0)
        clocks[p] = end
        point = rng.uniform(start, end)
        kind = rng.choice(["read", "write", "cas"])
        key = f"k{rng.randrange(keys)}"
        planned.append((point, op_id, p, kind, key, start, end))
    state: dict[str, Any] = {}
    ops = []
    for point, op_id, p, kind, key, start, end in sorted(planned):
        _ = point
        unknown = rng.random() < unknown_rate
        takes_effect = not unknown or rng.random() < 0.5
        cur = state.get(key)
        if kind == "read":
            if unknown:
                continue
            ops.append(op(op_id, "read", None, cur, t=(start, end), key=key, process=f"p{p}"))
        elif kind == "write":
            value = rng.randrange(5)
            if takes_effect:
                state[key] = value
            ops.append(op(op_id, "write", value, None, t=(start, end), key=key,
                          process=f"p{p}", status="unknown" if unknown else "ok"))
        else:
            expected, new = rng.choice([cur, rng.randrange(5)]), rng.randrange(5)
            applies = cur == expected
            if applies and takes_effect:
                state[key] = new
            status = "unknown" if unknown else ("ok" if applies else "fail")
            ops.append(op(op_id, "cas", [expected, new], None, t=(start, end), key=key,
                          process=f"p{p}", status=status))
    return sorted(ops, key=lambda o: o.invoke_time)
