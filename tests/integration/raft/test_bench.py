"""The consensus benchmark runs end to end and reports every figure (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

from node.bench.consensus import run_consensus_bench
from node.embedded import NatsServer


async def test_consensus_bench_reports_all_figures(nats_server: NatsServer,
                                                  tmp_path: Path) -> None:
    out = await run_consensus_bench(nats_server, proposals=30, pipelined=300, window=64,
                                    tmp_dir=tmp_path, in_process=True)
    for key in ("commit_us_p50", "commit_us_p99", "raw_rtt_us_p50", "commits_per_s",
                "failover_ms"):
        assert out[key] > 0, key
    assert out["commit_us_p99"] >= out["commit_us_p50"]
