"""``broker-agents bench``: run benchmark suites (``node.bench``), all of them into one
report, and compare two reports.

- ``bench <suite>``: one suite; ``--json`` prints its dict, otherwise a metric/value table;
- ``bench all --json --out FILE [--quick]``: every suite into one report with the machine,
  versions and git revision (``node.bench.report``); a crashed suite exits non-zero;
- ``bench compare BASE NEW [--tolerance 0.1]``: significant changes beyond the tolerance
  (``node.bench.compare``); exits 1 on a regression.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from node.cli.common import JsonOpt, console, err_console, pairs_table, print_json, show
from node.exitcodes import ExitCode

app = typer.Typer(no_args_is_help=True, help="Benchmarks: ours beside raw NATS.")

QuickOpt = Annotated[bool, typer.Option("--quick", help="small counts (a smoke run)")]


def _show(suite: str, result: dict[str, Any], as_json: bool) -> None:
    show(result, as_json, lambda: _table(suite, result))


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float | int)
                                                           for v in value):
        return f"[{value[0]:,.2f}, {value[1]:,.2f}]"
    return str(value)


def _table(suite: str, result: dict[str, Any]) -> Table:
    rows = ((key, _value(value)) for key, value in result.items())
    return pairs_table(f"bench {suite}", rows, columns=("metric", "value"), justify="right")


def _run(suite: str, as_json: bool, quick: bool, **kwargs: Any) -> None:
    from node.bench.suites import run_suite_sync

    given = {k: v for k, v in kwargs.items() if v is not None}
    _show(suite, run_suite_sync(suite, quick=quick, **given), as_json)


@app.command("messaging")
def messaging(
    as_json: JsonOpt = False, quick: QuickOpt = False,
    requests: Annotated[int | None, typer.Option(help="sequential round trips [2000]")] = None,
    messages: Annotated[int | None, typer.Option(help="one-way messages [100000]")] = None,
) -> None:
    """Agent request/reply across two node processes and one-way throughput, beside raw."""
    _run("messaging", as_json, quick, requests=requests, messages=messages)


@app.command("registry")
def registry(as_json: JsonOpt = False, quick: QuickOpt = False) -> None:
    """Local-view lookups and queries over many agents, durable writes beside raw KV put."""
    _run("registry", as_json, quick)


@app.command("consensus")
def consensus(
    as_json: JsonOpt = False, quick: QuickOpt = False,
    proposals: Annotated[int | None, typer.Option(help="sequential proposals")] = None,
    pipelined: Annotated[int | None, typer.Option(help="pipelined proposals")] = None,
    in_process: Annotated[bool, typer.Option(
        "--in-process", help="all members in this process (the old path) instead of "
                             "3 node processes")] = False,
) -> None:
    """Commit latency of a 3-member group beside raw request/reply and JetStream R3;
    64 concurrent clients; failover."""
    if in_process:
        from node.bench.suites import SUITES, accepts

        if not accepts(SUITES["consensus"].function(), "in_process"):
            err_console.print("[red]usage[/red] this build's consensus bench has no "
                              "in-process option (run_consensus_bench(in_process=...))")
            raise typer.Exit(ExitCode.USAGE)
    _run("consensus", as_json, quick, proposals=proposals, pipelined=pipelined,
         in_process=True if in_process else None)


@app.command("auction")
def auction(as_json: JsonOpt = False, quick: QuickOpt = False) -> None:
    """Sealed-bid auction over 100 bidder agents on two nodes, beside raw fan-out."""
    _run("auction", as_json, quick)


@app.command("coordination")
def coordination(
    as_json: JsonOpt = False, quick: QuickOpt = False,
    runs: Annotated[int | None, typer.Option(help="timed requests per protocol [100]")] = None,
) -> None:
    """Votes among 10 and 100 agents on two nodes beside raw fan-out; PBFT 4; hierarchical."""
    _run("coordination", as_json, quick, runs=runs)


@app.command("variables")
def variables(as_json: JsonOpt = False, quick: QuickOpt = False) -> None:
    """Variables: committed set latency, sustained updates/s, feedback -> new value visible."""
    _run("variables", as_json, quick)


@app.command("all")
def run_all(
    as_json: JsonOpt = False, quick: QuickOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="write the report here")] = None,
    suite: Annotated[list[str] | None, typer.Option(
        "--suite", help="only these suites (repeatable; default: all)")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="seconds per suite before it counts as failed [300 quick, 900 full]")] = None,
) -> None:
    """Every suite into one report (machine, versions, git revision, every suite's figures).
    A suite that crashes is recorded as an error, the others still run, and the exit code
    is non-zero."""
    from node.bench.report import build_report, failed

    def progress(name: str, result: dict[str, Any], seconds: float) -> None:
        state = f"[red]error[/red] {escape(str(result['error']))}" if "error" in result \
            else "[green]ok[/green]"
        err_console.print(f"bench {name}: {state} ({seconds:.0f} s)", soft_wrap=True)

    try:
        report = build_report(quick=quick, suites=suite, timeout=timeout, progress=progress,
                              out=out)
    except ValueError as exc:
        err_console.print(f"[red]usage[/red] {escape(str(exc))}")
        raise typer.Exit(ExitCode.USAGE) from None
    if as_json:
        print_json(report)
    else:
        table = Table(title="bench all")
        for column in ("suite", "status", "seconds", "figures"):
            table.add_column(column)
        for name, result in report["suites"].items():
            status = "error" if "error" in result else "ok"
            table.add_row(name, status, str(report["seconds"][name]),
                          str(sum(1 for k in result if k.endswith("_ci95"))))
        console.print(table)
    bad = failed(report)
    if bad:
        err_console.print(f"[red]failed[/red] {', '.join(bad)}")
        raise typer.Exit(ExitCode.FAILURE)


_STYLE = {"regression": "bold red", "improvement": "green", "error": "bold red",
          "missing": "yellow", "noise": "dim"}
_SHOWN = {"regression", "improvement", "noise", "no interval", "context", "error", "missing",
          "new"}  # not "info": counts and settings (--all shows them)


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.4g}"
    return f"{text} [{ci[0]:,.4g}, {ci[1]:,.4g}]" if ci else text


def comparison_table(result: Any, tolerance: float, show_all: bool) -> Table:
    """base, new (each with its interval), change and verdict per figure."""
    table = Table(title=f"bench compare (tolerance {tolerance:.0%}; "
                        f"{len(result.regressions)} regression(s))")
    for column in ("suite", "figure", "base [95% CI]", "new [95% CI]", "change", "verdict"):
        table.add_column(column, justify="right" if column == "change" else "left",
                         no_wrap=True)
    for row in result.rows:
        verdict = str(row.verdict)
        if not show_all and verdict not in _SHOWN:
            continue
        change = "-" if row.change is None else f"{row.change:+.1%}"
        if row.scale is not None:
            change += f" (raw {row.scale - 1:+.0%})"
        style = _STYLE.get(verdict, "")
        table.add_row(row.suite, row.figure, _with_ci(row.base, row.base_ci),
                      _with_ci(row.new, row.new_ci), change,
                      f"[{style}]{verdict}[/{style}]" if style else verdict)
    return table


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]usage[/red] {escape(str(path))}: {escape(str(exc))}")
        raise typer.Exit(ExitCode.USAGE) from None
    if not isinstance(data, dict) or not isinstance(data.get("suites"), dict):
        err_console.print(f"[red]usage[/red] {escape(str(path))} is not a `bench all` report")
        raise typer.Exit(ExitCode.USAGE)
    return data


@app.command("compare")
def compare_reports(
    base: Annotated[Path, typer.Argument(help="the baseline report (bench all --out)")],
    new: Annotated[Path, typer.Argument(help="the report to judge")],
    tolerance: Annotated[float, typer.Option(
        min=0.0, help="relative change to ignore beyond the intervals (0.1 = 10%)")] = 0.1,
    as_json: JsonOpt = False,
    show_all: Annotated[bool, typer.Option("--all", help="also rows that are not judged "
                                                         "(counts, settings)")] = False,
    relative: Annotated[bool, typer.Option(
        "--relative", help="judge times and rates after dividing out how much the suite's "
                           "own raw baselines moved between the runs (machine load)")] = False,
) -> None:
    """Which figures changed beyond their 95% intervals and the tolerance; exit 1 on a
    regression (or a suite that crashed in NEW)."""
    from node.bench.compare import compare

    result = compare(_load(base), _load(new), tolerance, relative)
    if result.machine_differences:
        differ = "; ".join(f"{k}: {b!r} vs {n!r}"
                           for k, (b, n) in result.machine_differences.items())
        print(f"warning: the reports come from different machines ({differ}); absolute "
              "figures are not comparable, ratios to raw mostly are", file=sys.stderr)
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    if as_json:
        print_json(result.to_json())
    else:
        # wide even in a CI log (not a terminal): one figure per line reads best
        wide = console if console.is_terminal else Console(width=160)
        wide.print(comparison_table(result, tolerance, show_all))
    if result.regressions:
        raise typer.Exit(ExitCode.FAILURE)
