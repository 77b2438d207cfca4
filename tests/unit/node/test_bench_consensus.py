"""The consensus benchmark's pieces that need no server: the load shapes, the metric
scrape parser, the fsync floor and the report's figures (each with its interval)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.bench.consensus_procs import _METRIC, _term, fsync_floor
from node.bench.consensus_report import ratio, report
from node.bench.load import Loaded, closed_loop, sequential, spread


async def test_spread_answers_every_operation_once() -> None:
    seen: list[int] = []

    async def op(client: int, i: int) -> None:
        await asyncio.sleep(0)
        seen.append(i)

    out = await spread(op, 100, 8)
    assert sorted(seen) == list(range(100))
    assert out.count == 100 and out.seconds > 0


async def test_closed_loop_stops_at_its_deadline_and_fails_on_an_error() -> None:
    out = await closed_loop(lambda c, i: asyncio.sleep(0.001), 4, 0.05)
    assert out.count > 0 and all(s > 0 for s in out.samples)

    async def broken(client: int, i: int) -> None:
        if i == 3:
            raise RuntimeError("lost")
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="lost"):
        await closed_loop(broken, 2, 5.0)


async def test_sequential_times_each_operation() -> None:
    samples = await sequential(lambda c, i: asyncio.sleep(0), 5)
    assert len(samples) == 5


def test_metric_lines_of_our_group_are_parsed() -> None:
    text = ('ba_raft_term{group="bench",member="node-2"} 7.0\n'
            'ba_raft_elections_total{group="bench",member="node-2"} 2.0\n'
            'ba_raft_term{group="other",member="node-2"} 99.0\n')
    found = _METRIC.findall(text)
    assert ("ba_raft_term", "bench", "node-2", "7.0") in found
    assert _term({"a": {"ba_raft_term": 3.0}, "b": {"ba_raft_term": 5.0}}) == 5


def test_fsync_floor_measures_and_cleans_up(tmp_path: Path) -> None:
    samples = fsync_floor(tmp_path, 5)
    assert len(samples) == 5 and all(s > 0 for s in samples)
    assert list(tmp_path.iterdir()) == []


def test_ratio_is_the_median_of_paired_rounds() -> None:
    out = ratio("r", [2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
    assert out["r"] == 2.0
    low, high = out["r_ci95"]
    assert low <= 2.0 <= high


def test_report_has_every_contract_figure_with_its_interval() -> None:
    seq = {"raft": [[0.002, 0.003]], "js": [[0.001, 0.002]]}
    loaded = {"raft": [Loaded([0.01, 0.02, 0.03], 1.0)], "js": [Loaded([0.01, 0.01], 1.0)]}
    out = report([0.0004], [0.0001], seq, loaded, [0], [0.25], 0,
                  {"raft": [0.0002], "js": [0.0001]})
    for name in ("commit_us_p50", "commit_us_p99", "commit_us_p99_c64", "commits_per_s_c64",
                 "leader_changes_c64", "failover_ms", "raw_rtt_us_p50", "fsync_us_p50",
                 "js_r3_put_us_p50", "js_r3_put_us_p99_c64", "js_r3_puts_per_s_c64",
                 "commit_to_js_r3_p50_ratio", "commit_p99_c64_to_js_r3_ratio",
                 "commits_c64_to_js_r3_ratio", "cpu_us_per_commit_c64",
                 "js_r3_cpu_us_per_put_c64"):
        assert name in out and f"{name}_ci95" in out, name
    assert out["commits_per_s_c64"] == 3.0 and out["js_r3_puts_per_s_c64"] == 2.0
    assert out["commits_c64_to_js_r3_ratio"] == 1.5
    assert out["failover_ms"] == 250.0


def test_commit_floor_adds_the_client_and_route_round_trips_and_an_fsync() -> None:
    seq = {"raft": [[0.002, 0.002]], "js": [[0.001, 0.001]]}
    loaded = {"raft": [Loaded([0.01], 1.0)], "js": [Loaded([0.01], 1.0)]}
    out = report([0.0003], [0.0001], seq, loaded, [0], [0.25], 0,
                  routed=[0.0005, 0.0005, 0.0005])
    assert out["raw_route_rtt_us_p50"] == 500.0
    assert out["commit_floor_us_p50"] == 900.0  # 300 + 500 + 100 us
    assert out["commit_floor_us_p50_ci95"] == [900.0, 900.0]
    assert out["commit_floor_to_js_r3_ratio"] == 0.9
    assert "commit_floor_us_p50" not in report([0.0003], [0.0001], seq, loaded, [0],
                                                [0.25], 0)  # no routed probe: no floor


def test_remote_placement_is_reported_beside_the_leaders_server() -> None:
    seq = {"raft": [[0.002]], "js": [[0.001]]}
    loaded = {"raft": [Loaded([0.01] * 4, 1.0)], "js": [Loaded([0.01] * 4, 1.0)],
              "raft_remote": [Loaded([0.01] * 3, 1.0)], "js_remote": [Loaded([0.01] * 2, 1.0)]}
    out = report([0.0003], [0.0001], seq, loaded, [0], [0.25], 0,
                 placement={"raft_leader_server": 2, "js_leader_server": 0})
    assert out["commits_c64_to_js_r3_ratio"] == 1.0
    assert out["commits_per_s_c64_remote"] == 3.0 and out["js_r3_puts_per_s_c64_remote"] == 2.0
    assert out["commits_c64_to_js_r3_ratio_remote"] == 1.5
    assert "commits_per_s_c64_remote_ci95" in out
    assert out["placement"] == {"raft_leader_server": 2, "js_leader_server": 0}


def test_cpu_seconds_of_this_process_grow_with_work() -> None:
    import os

    from node.bench.consensus_procs import _cpu_seconds

    before = _cpu_seconds([os.getpid()])
    sum(i * i for i in range(2_000_000))
    assert _cpu_seconds([os.getpid()]) > before
    assert _cpu_seconds([2**30]) == 0  # a gone process counts nothing
