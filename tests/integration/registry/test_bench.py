"""The benchmark runs and reports every figure (values are not asserted: no timed tests)."""

from __future__ import annotations

from node.bench.registry import run_registry_bench
from node.embedded import NatsServer


async def test_bench_reports_all_figures_and_cleans_up(nats_server: NatsServer,
                                                      nc: object) -> None:
    result = await run_registry_bench(nats_server, agents=300, samples=20, scans=5)
    for key in ("lookup_ns_p50", "query_us_p50", "query_us_p50_50k", "register_us_p50",
                "register_us_p99", "raw_kv_put_us_p50", "propagation_us_p99", "scan_ms_p50",
                "scan_cold_ms_p50", "comprehension_ms_p50", "scan_vs_comprehension",
                "scan_cold_vs_comprehension"):
        assert result[key] > 0, key
        low, high = result[f"{key}_ci95"]
        assert low <= result[key] <= high, key
    assert result["relists_during_load"] >= 0
    assert result["agents"] == 345
    streams = [s.config.name for s in await nc.jetstream().streams_info()]  # type: ignore[attr-defined]
    assert not [s for s in streams if s.startswith("KV_ba_")]
