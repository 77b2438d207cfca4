"""``ba_node_ready`` follows readiness without anyone asking /readyz: the node's status
publisher computes readiness every ``status_interval_s`` and the gauge moves with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from node.config import load_config
from node.daemon import Node
from tests.integration.raft.helpers import wait_for


def ready() -> float | None:
    return REGISTRY.get_sample_value("ba_node_ready")


async def test_the_ready_gauge_follows_a_node_that_stops_serving(tmp_path: Path) -> None:
    cfg = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3,
                                  "status_interval_s": 0.1},
                      nats={"embedded": {"port": 0}}, http={"port": 0},
                      agents=[{"class": "broker_agents.coord.coordinator:CoordinatorAgent",
                               "id": "coord", "kwargs": {"max_inflight": 1}}])
    node = Node(cfg)
    await node.start()
    try:
        await wait_for(lambda: ready() == 1, timeout=10, what="ba_node_ready == 1")
        coord: Any = node.agents["coord"]
        coord._serving = coord.admission.max_inflight  # saturated: the node is not ready
        await wait_for(lambda: ready() == 0, timeout=10, what="ba_node_ready == 0")
        coord._serving = 0
        await wait_for(lambda: ready() == 1, timeout=10, what="ba_node_ready == 1 again")
    finally:
        await node.shutdown()
    assert node.readiness()["ready"] is False and ready() == 0
