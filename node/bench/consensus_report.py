"""The figures of ``bench consensus`` (``consensus_procs.py`` measures): percentiles with
their bootstrap intervals, ours beside JetStream's per round, and the same-run floors."""

from __future__ import annotations

import statistics
from typing import Any

from node.bench.load import Loaded
from node.bench.stats import ci95, figure, percentile, rate_figure


def handover_figures(planned: list[tuple[float, float, int]], raw: list[float],
                      fsyncs: list[float]) -> dict[str, Any]:
    """A planned restart of the leader's node (SIGTERM: it hands leadership over first):
    the longest gap between one writer's commits, the commit latency of that series, what
    the restart added (gap - commit), and the floor it is held to (a round trip + fsync)."""
    if not planned:
        return {}
    gaps, commits, failed = zip(*planned, strict=True)
    extra = [gap - commit for gap, commit, _ in planned]
    return {
        **figure("handover_gap_ms", list(gaps), 50, 1e3),
        "handover_gap_ms_samples": [round(g * 1e3, 2) for g in gaps],
        **figure("handover_commit_ms_p50", list(commits), 50, 1e3),
        **figure("handover_extra_ms", extra, 50, 1e3),
        "handover_floor_ms": round((statistics.median(raw) + statistics.median(fsyncs)) * 1e3, 3),
        "handover_failed_commits": sum(failed),
    }


def ratio(name: str, ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """The median per-round ratio (each round measured both systems back to back)."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
    low, high = ci95(ratios)
    return {name: round(statistics.median(ratios), 3) if ratios else float("nan"),
            f"{name}_ci95": [round(low, 3), round(high, 3)]}


def commit_floor(raw: list[float], routed: list[float], fsyncs: list[float],
                  js_p50: float) -> dict[str, Any]:
    """What no leader-based commit can go under here: the client's round trip to the
    leader (on the clients' server, the cheapest case), the leader's round trip to a
    follower (the members sit on different servers, so across a route) and the follower's
    fsync, with no work of ours at all. JetStream replicates inside the servers."""
    if not routed:
        return {}
    parts = [[x * 1e6 for x in samples] for samples in (raw, routed, fsyncs)]
    floor = sum(statistics.median(p) for p in parts)
    bounds = [ci95(p) for p in parts]
    return {**figure("raw_route_rtt_us_p50", routed, 50, 1e6),
            "commit_floor_us_p50": round(floor, 1),
            "commit_floor_us_p50_ci95": [round(sum(b[k] for b in bounds), 1) for k in (0, 1)],
            "commit_floor_to_js_r3_ratio": round(floor / (js_p50 * 1e6), 3)}


def _rates(loaded: dict[str, list[Loaded]], where: str = "") -> dict[str, Any]:
    """Both systems' 64-client rates and ours over theirs; ``where`` ``"_remote"``: with each
    system's clients on a server its leader is not on."""
    ours, theirs = loaded.get(f"raft{where}"), loaded.get(f"js{where}")
    if not ours or not theirs:
        return {}
    return {
        **rate_figure(f"commits_per_s_c64{where}", [r.count for r in ours],
                      [r.seconds for r in ours]),
        **rate_figure(f"js_r3_puts_per_s_c64{where}", [r.count for r in theirs],
                      [r.seconds for r in theirs]),
        **ratio(f"commits_c64_to_js_r3_ratio{where}", [r.count / r.seconds for r in ours],
                [r.count / r.seconds for r in theirs]),
    }


def report(raw: list[float], fsyncs: list[float], seq: dict[str, list[list[float]]],
            loaded: dict[str, list[Loaded]], changes: list[int], failover: list[float],
            retries_c64: int, cpu: dict[str, list[float]] | None = None,
            planned: list[tuple[float, float, int]] | None = None,
            per_request: list[float] | None = None, routed: list[float] | None = None,
            snapshots: list[int] | None = None, **params: Any) -> dict[str, Any]:
    def flat(rounds: list[list[float]]) -> list[float]:
        return [x for r in rounds for x in r]

    raft_c, js_c = loaded["raft"], loaded["js"]
    p50 = [[percentile(r, 50) for r in seq[k]] for k in ("raft", "js")]
    p99c = [[percentile(r.samples, 99) for r in loaded[k]] for k in ("raft", "js")]
    total_changes = sum(changes)
    sent = sum(snapshots or [])
    return {
        **figure("commit_us_p50", flat(seq["raft"]), 50, 1e6),
        **figure("commit_us_p99", flat(seq["raft"]), 99, 1e6),
        **figure("commit_us_p99_c64", flat([r.samples for r in raft_c]), 99, 1e6),
        **_rates(loaded),
        "leader_changes_c64": total_changes,
        "leader_changes_c64_ci95": [total_changes, total_changes],  # a count, not a sample
        "leader_changes_c64_per_round": changes,
        # InstallSnapshots to followers while loaded, no fault injected (the catch-up
        # window, RaftConfig.snapshot_trail, keeps a follower that trails a little on
        # appends): a count per round, not a sample
        "snapshots_sent_c64": sent,
        "snapshots_sent_c64_ci95": [sent, sent],
        "snapshots_sent_c64_per_round": snapshots or [],
        "retries_c64": retries_c64,
        **figure("failover_ms", failover, 50, 1e3),
        "failover_ms_samples": [round(x * 1e3, 1) for x in failover],
        **handover_figures(planned or [], raw, fsyncs),
        **figure("raw_rtt_us_p50", raw, 50, 1e6),
        **figure("fsync_us_p50", fsyncs, 50, 1e6),
        **figure("js_r3_put_us_p50", flat(seq["js"]), 50, 1e6),
        **figure("js_r3_put_us_p99", flat(seq["js"]), 99, 1e6),
        **figure("js_r3_put_us_p99_c64", flat([r.samples for r in js_c]), 99, 1e6),
        # CPU of the nodes and nats-servers (ours) or the nats-servers (theirs) per write
        **figure("cpu_us_per_commit_c64", (cpu or {}).get("raft", []), 50, 1e6),
        **figure("js_r3_cpu_us_per_put_c64", (cpu or {}).get("js", []), 50, 1e6),
        # how many proposals one client request carried, on average (batches: > 1)
        **figure("proposals_per_request_c64", per_request or [], 50, 1),
        **ratio("commit_to_js_r3_p50_ratio", p50[0], p50[1]),
        **ratio("commit_p99_c64_to_js_r3_ratio", p99c[0], p99c[1]),
        **_rates(loaded, "_remote"),
        **ratio("commit_to_rtt_ratio", p50[0], [statistics.median(raw)] * len(p50[0])),
        **ratio("commit_to_fsync_ratio", p50[0], [statistics.median(fsyncs)] * len(p50[0])),
        **commit_floor(raw, routed or [], fsyncs, statistics.median(flat(seq["js"]))),
        "members": 3, "processes": 3, "nats_servers": 3, "in_process": False,
        "js_sync_interval": "always", **params,
    }
