"""Chaos run reports: one record per scenario, JSON out, and a rich summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from chaos.checkers.result import CheckResult

Verdict = Literal["ok", "violation", "unknown", "error"]


class ScenarioReport(BaseModel):
    """What one scenario did and found; ``verdict`` is the worst of its checks."""

    scenario: str
    seed: int
    duration_s: float
    network: str = "loopback"
    hosts: list[dict[str, Any]] = Field(default_factory=list)
    buckets: dict[str, dict[str, Any]] = Field(default_factory=dict)  # as the nodes made them
    fault_plan: list[dict[str, Any]] = Field(default_factory=list)
    faults: list[dict[str, Any]] = Field(default_factory=list)
    ops: dict[str, int] = Field(default_factory=lambda: {
        "invoked": 0, "ok": 0, "failed": 0, "unknown": 0})
    checks: list[CheckResult] = Field(default_factory=list)
    recovery: dict[str, float | None] = Field(default_factory=dict)
    history_path: str | None = None
    nats_server: str | None = None
    error: str | None = None

    @property
    def violations(self) -> list[str]:
        return [f"{c.checker}: {v}" for c in self.checks for v in c.violations]

    @property
    def verdict(self) -> Verdict:
        if self.error:
            return "error"
        if any(c.verdict == "violation" for c in self.checks):
            return "violation"
        if any(c.verdict == "unknown" for c in self.checks):
            return "unknown"
        return "ok"

    def replay_hint(self) -> str:
        return (f"broker-agents chaos run --network {self.network} --scenario {self.scenario}"
                f" --seed {self.seed} --duration {self.duration_s:g}")

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["verdict"] = self.verdict
        data["violations"] = self.violations
        data["replay"] = self.replay_hint()
        return data


class ChaosReport(BaseModel):
    network: str = "loopback"
    seed: int | None = None
    scenarios: list[ScenarioReport] = Field(default_factory=list)

    @property
    def hosts(self) -> list[dict[str, Any]]:
        """The hosts of the run (each scenario builds the same network afresh)."""
        return next((s.hosts for s in self.scenarios if s.hosts), [])

    @property
    def failed(self) -> bool:
        """Non-zero exit: any violation or error (an undecided check is not a pass either)."""
        return any(s.verdict != "ok" for s in self.scenarios)

    def to_json_dict(self) -> dict[str, Any]:
        return {"network": self.network, "seed": self.seed, "hosts": self.hosts,
                "scenarios": [s.to_json_dict() for s in self.scenarios],
                "failed": self.failed}

    def write(self, path: Path) -> None:
        import json

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json_dict(), indent=2, default=str) + "\n")

    def table(self) -> Table:
        table = Table(title="chaos run")
        for column in ("scenario", "seed", "faults", "invoked", "ok", "failed", "unknown",
                       "violations", "recovery", "verdict"):
            table.add_column(column, justify="right" if column in (
                "seed", "invoked", "ok", "failed", "unknown", "violations") else "left")
        for s in self.scenarios:
            injected = sum(1 for f in s.faults if f.get("action") == "inject")
            recovery = ", ".join(f"{k}={v:.2f}s" if v is not None else f"{k}=never"
                                 for k, v in s.recovery.items()) or "-"
            style = {"ok": "green", "violation": "red", "unknown": "yellow"}.get(s.verdict, "red")
            table.add_row(s.scenario, str(s.seed), str(injected), str(s.ops["invoked"]),
                          str(s.ops["ok"]), str(s.ops["failed"]), str(s.ops["unknown"]),
                          str(len(s.violations)), recovery, f"[{style}]{s.verdict}[/{style}]")
        return table

    def render(self, console: Console | None = None) -> None:
        console = console or Console()
        console.print(self.table())
        for s in self.scenarios:
            for line in s.violations[:20]:
                console.print(f"[red]{s.scenario}[/red] {line}")
            if s.error:
                console.print(f"[red]{s.scenario} error:[/red] {s.error}")
            if s.verdict != "ok":
                console.print(f"replay: {s.replay_hint()}")
