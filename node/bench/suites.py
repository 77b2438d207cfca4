"""The benchmark suites in one registry: how to run each, and its small ``--quick`` counts.

Each suite is ``node.bench.<name>.run_<name>_bench(**kwargs) -> dict``. Some take the
nats-server they measure on as their first argument (``server``); ``run_suite`` gives them a
fresh secured one (``harness.on_fresh_server``) and passes ``tmp_dir`` where accepted, so
callers (the CLI, ``bench all``) never need to know which kind a suite is.

Keyword arguments a suite does not (or no longer) accept are dropped rather than failing
the run: the suites change under their own owners, and a ``--quick`` count for a knob that
went away must not crash ``bench all``. What was dropped is returned so the report can say.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SuiteFn = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Suite:
    """One suite: its name (module ``node.bench.<name>``) and its ``--quick`` kwargs."""

    name: str
    quick: dict[str, Any] = field(default_factory=dict)

    def function(self) -> SuiteFn:
        module = importlib.import_module(f"node.bench.{self.name}")
        fn: SuiteFn = getattr(module, f"run_{self.name}_bench")
        return fn


# Quick counts: the whole ``bench all --quick`` in about two minutes on a 2-core VM. Knobs
# that keep a figure's meaning (e.g. 64 concurrent clients in ``*_c64``) are not shrunk.
SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("messaging", {"requests": 500, "messages": 20_000, "rounds": 5}),
    Suite("registry", {"agents": 2_000, "samples": 100}),
    Suite("consensus", {"proposals": 300, "pipelined": 2_000, "seconds": 3.0, "rounds": 3,
                        "failovers": 3, "handovers": 2}),
    Suite("auction", {"sealed_runs": 30, "english_runs": 3, "raw_runs": 150,
                      "large_runs": 20}),
    Suite("coordination", {"runs": 60, "raw_runs": 150}),
    Suite("variables", {"sets": 200, "pipelined": 2_000, "adapt_rounds": 40, "raw": 200}),
)}


def parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def accepts(fn: Callable[..., Any], name: str) -> bool:
    params = parameters(fn)
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def split_kwargs(fn: Callable[..., Any],
                 kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what ``fn`` accepts, what it does not)."""
    kept = {k: v for k, v in kwargs.items() if accepts(fn, k)}
    return kept, {k: v for k, v in kwargs.items() if k not in kept}


def needs_server(fn: Callable[..., Any]) -> bool:
    """A suite whose first parameter is ``server`` runs on a nats-server we start."""
    first = next(iter(parameters(fn).values()), None)
    return first is not None and first.name == "server" and first.default is first.empty


async def run_suite(name: str, *, quick: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Run suite ``name`` (``--quick`` counts first, then ``kwargs``) and return its dict;
    kwargs it does not accept are listed under ``"ignored_kwargs"`` in the result."""
    suite = SUITES[name]
    fn = suite.function()
    wanted = {**(suite.quick if quick else {}), **kwargs}
    kept, dropped = split_kwargs(fn, wanted)
    if needs_server(fn):
        from node.bench.harness import on_fresh_server

        async def on(server: Any, tmp: Path) -> dict[str, Any]:
            extra = {"tmp_dir": tmp} if accepts(fn, "tmp_dir") and "tmp_dir" not in kept else {}
            return await fn(server, **kept, **extra)

        result = await on_fresh_server(on)
    else:
        result = await fn(**kept)
    if dropped:
        result = {**result, "ignored_kwargs": sorted(dropped)}
    return result


class SuiteTimeout(Exception):
    """The suite overran the time ``run_suite_sync`` gave it (not a timeout inside it)."""


def run_suite_sync(name: str, *, quick: bool = False, timeout: float | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """``run_suite`` on an event loop of its own (one per suite: a suite that crashes or
    leaks tasks cannot spoil the next), bounded by ``timeout`` seconds."""
    async def bounded() -> dict[str, Any]:
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                return await run_suite(name, quick=quick, **kwargs)
        except TimeoutError:
            if limit.expired():
                raise SuiteTimeout(f"timed out after {timeout:.0f} s") from None
            raise  # a request inside the suite timed out: the suite's own error

    return asyncio.run(bounded())
