"""What the dashboard costs the cluster, measured on a 3-node playground cluster.

    .venv/bin/python -m node.dashboard.cost [--rounds 4] [--window 8]

One secured ``LocalCluster`` running ``config/playground.toml`` (its nodes publish status
events every 2 s, the default). Rounds alternate two conditions, in the same run: **off**
(no dashboard) and **on** (``broker-agents dashboard`` as its own process, one SSE client
reading ``/api/stream`` as an open browser tab would). Each window measures the
nats-server's messages in and out per second (``/varz`` deltas) and the CPU of the three
node processes, of the nats-server and of the dashboard (``/proc/<pid>/stat``), as a
percentage of one core. ``extra_*`` are the paired per-round differences on - off. The
status events' own share is measured separately: their count and size on the wire.
Figures carry ``_ci95`` (``node.bench.stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from node.auth.roles import Role
from node.bench.stats import figure
from node.cluster import LocalCluster
from node.embedded import NatsServer, free_port

ROOT = Path(__file__).parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU seconds of ``pid`` so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


async def _varz(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    async with http.get(url) as reply:
        doc = await reply.json(content_type=None)
    return float(doc["in_msgs"]), float(doc["out_msgs"])


async def _window(http: aiohttp.ClientSession, varz: str, nodes: list[int | None],
                  nats: int | None, dash: int | None, seconds: float) -> dict[str, float]:
    in0, out0 = await _varz(http, varz)
    cpu0 = [cpu_seconds(p) for p in (*nodes, nats, dash)]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window itself
    elapsed = time.monotonic() - t0
    in1, out1 = await _varz(http, varz)
    cpu1 = [cpu_seconds(p) for p in (*nodes, nats, dash)]
    used = [(b - a) / elapsed * 100 for a, b in zip(cpu0, cpu1, strict=True)]
    return {"msgs_in_per_s": (in1 - in0) / elapsed, "msgs_out_per_s": (out1 - out0) / elapsed,
            "nodes_cpu_pct": sum(used[:len(nodes)]), "nats_cpu_pct": used[len(nodes)],
            "dashboard_cpu_pct": used[-1]}


async def _status_seconds(http: aiohttp.ClientSession, port: int) -> tuple[float, float]:
    """(sum, count) of a node's ``ba_node_status_seconds`` from its ``/metrics``."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as reply:
        text = await reply.text()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"ba_node_status_seconds_{part} "):
                found[part] = float(line.split()[1])
    return found["sum"], found["count"]


class _Dashboard:
    """``broker-agents dashboard`` as a subprocess with one SSE client attached."""

    def __init__(self, context: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "dashboard", "--port", str(self.port),
             "--context", str(context)], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self.events = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        base = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + timeout
        while True:  # until it serves a cluster with every node up (its warm-up)
            with contextlib.suppress(aiohttp.ClientError, OSError, KeyError):
                async with http.get(base + "/api/cluster") as reply:
                    if (await reply.json())["totals"]["nodes_up"] == 3:
                        break
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("the dashboard did not come up")
            await asyncio.sleep(0.2)  # start-up poll of a subprocess
        self._reader = asyncio.create_task(self._read(http, base + "/api/stream"))

    async def _read(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as reply:
            async for line in reply.content:
                if line.startswith(b"event:"):
                    self.events += 1

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def run_dashboard_cost(rounds: int = 4, window_s: float = 8.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ba-dash-cost-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, config=ROOT / "config" / "playground.toml",
                               ready_timeout=90)
        await cluster.start()
        try:
            return await _measure(cluster, rounds, window_s)
        finally:
            await asyncio.to_thread(cluster.stop)


async def _measure(cluster: LocalCluster, rounds: int, window_s: float) -> dict[str, Any]:
    assert cluster.auth is not None and cluster.nats is not None
    server = cluster.nats
    assert isinstance(server, NatsServer)  # one embedded server, not a NATS cluster
    varz = f"http://127.0.0.1:{server.monitor_port}/varz"
    nodes = [p.pid for p in cluster.procs]
    nats_pid = server.pid
    status = {"count": 0, "bytes": 0}
    watcher = await cluster.client(Role.NODE)

    async def on_status(msg: Any) -> None:
        status["count"] += 1
        status["bytes"] += len(msg.data)

    await watcher.subscribe("ba.events.node.*.status", cb=on_status)
    samples: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    sse_events: list[float] = []
    status_rate: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for r in range(rounds):
            for condition in (("off", "on") if r % 2 == 0 else ("on", "off")):
                dash = None
                if condition == "on":
                    dash = _Dashboard(cluster.auth.contexts[Role.OBSERVER])
                    await dash.start(http)
                    events0 = dash.events
                count0, t0 = status["count"], time.monotonic()
                got = await _window(http, varz, nodes, nats_pid,
                                    dash.proc.pid if dash else None, window_s)
                status_rate.append((status["count"] - count0) / (time.monotonic() - t0))
                if dash is not None:
                    sse_events.append((dash.events - events0) / window_s)
                    dash.stop()
                for key, value in got.items():
                    samples[condition].setdefault(key, []).append(value)
        publish = [await _status_seconds(http, p.http_port) for p in cluster.procs]
    await watcher.close()
    out: dict[str, Any] = {"rounds": rounds, "window_s": window_s}
    total, count = sum(s for s, _ in publish), sum(c for _, c in publish)
    out["status_publish_ms_mean"] = round(total / max(count, 1) * 1000, 3)
    out["status_cpu_pct_per_node"] = round(total / max(count, 1) / 2.0 * 100, 3)
    for key in ("msgs_in_per_s", "msgs_out_per_s", "nodes_cpu_pct", "nats_cpu_pct"):
        off, on = samples["off"][key], samples["on"][key]
        out.update(figure(f"{key}_off", off, digits=2))
        out.update(figure(f"{key}_on", on, digits=2))
        out.update(figure(f"extra_{key}", [b - a for a, b in zip(off, on, strict=True)],
                          digits=2))
    out.update(figure("dashboard_cpu_pct", samples["on"]["dashboard_cpu_pct"], digits=2))
    out.update(figure("status_events_per_s", status_rate, digits=2))
    out.update(figure("sse_events_per_s", sse_events, digits=2))
    out["status_event_bytes_mean"] = round(status["bytes"] / max(status["count"], 1), 1)
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=float, default=8.0)
    args = parser.parse_args()
    from broker_agents.logging import configure_logging

    configure_logging("console", "warning")
    print(json.dumps(asyncio.run(run_dashboard_cost(args.rounds, args.window)), indent=1))


if __name__ == "__main__":
    main()
