"""The benchmark runs and reports every figure (values are not asserted: no timed tests)."""

from __future__ import annotations

from node.bench.registry import run_registry_bench
from node.embedded import NatsServer


async def test_bench_reports_all_figures_and_cleans_up(nats_server: NatsServer,
                                                      nc: object) -> None:
    result = await run_registry_bench(nats_server, agents=300, samples=20)
    for key in ("lookup_ns_p50", "query_us_p50", "register_us_p50", "register_us_p99",
                "raw_kv_put_us_p50", "propagation_us_p99"):
        assert result[key] > 0, key
    assert result["agents"] == 340
    streams = [s.config.name for s in await nc.jetstream().streams_info()]  # type: ignore[attr-defined]
    assert not [s for s in streams if s.startswith("KV_ba_")]
