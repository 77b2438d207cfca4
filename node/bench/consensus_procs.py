"""``bench consensus`` as a deployment runs it: 3 node daemons (one OS process each,
hosting one member of a consensus group through the ``consensus`` service) on a secured
3-server nats cluster that fsyncs every JetStream write, measured beside JetStream's own
replicated write (an R3 KV put) on that same cluster, in the same run.

Each round alternates the two systems (1 client sequentially, then ``concurrency``
clients in a closed loop), so drift on a shared machine hits both alike; ratios are the
median of the per-round ratios. Leader changes come from the members' own metrics (the
Raft term: every new leader needs a new term). The ``concurrency`` RaftClients share
``connections`` connections, so proposals issued together travel as batch requests
(``broker_agents/raft/coalesce.py``); ``proposals_per_request_c64`` says how many one
request carried on average. Failover kills the leader's process with
SIGKILL and times the next commit through a client, which retries under one request id.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.client import RaftClient
from broker_agents.transport import connect_client
from node.auth.roles import Role
from node.bench.handover import planned_restart
from node.bench.jetstream import r3_bucket, start_fsync_cluster
from node.bench.load import Loaded, closed_loop, sequential
from node.bench.proposals import raw_rtt
from node.bench.stats import ci95, figure, percentile, rate_figure
from node.cluster import LocalCluster

GROUP = "bench"
_PROPOSALS, _REQUESTS = "ba_raft_proposals_total", "ba_raft_proposal_requests_total"
_METRIC = re.compile(r'^(ba_raft_\w+)\{group="(\w+)",member="([\w-]+)"\} (\S+)$', re.M)


class BenchCluster(LocalCluster):
    """A LocalCluster whose nats cluster fsyncs every JetStream write."""

    async def start(self) -> LocalCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.nats = await asyncio.to_thread(start_fsync_cluster, self.base_dir / "nats")
        self.procs.extend(self._node(i) for i in range(1, self.nodes + 1))
        await self._spawn_and_wait(self.procs)
        return self


_HOOK = """import atexit, cProfile, os
_profile = cProfile.Profile()
_profile.enable()
def _dump():
    _profile.disable()
    node = os.environ.get("BA_NODE__ID", "proc")
    _profile.dump_stats(os.path.join({out!r}, f"{{node}}-{{os.getpid()}}.prof"))
atexit.register(_dump)
"""


def profiled(out: Path, hook_dir: Path) -> dict[str, str]:
    """The environment that runs a Python process under cProfile (a ``sitecustomize``
    on its path), dumping its profile into ``out`` at a graceful exit."""
    out.mkdir(parents=True, exist_ok=True)
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_HOOK.format(out=str(out.resolve())))
    path = os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {name: float(value) for name, group, _member, value in _METRIC.findall(text)
            if group == GROUP}


async def member_metrics(cluster: LocalCluster) -> dict[str, dict[str, float]]:
    """The live members' Raft metrics by node id (a killed node is left out)."""
    out = {}
    for proc in cluster.procs:
        if proc.process is not None and proc.process.poll() is None:
            out[proc.node_id] = await asyncio.to_thread(_scrape, proc.http_port)
    return out


def _term(metrics: dict[str, dict[str, float]]) -> int:
    return int(max(m.get("ba_raft_term", 0) for m in metrics.values()))


def _total(metrics: dict[str, dict[str, float]], name: str) -> float:
    return sum(m.get(name, 0.0) for m in metrics.values())


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def server_pids(cluster: LocalCluster) -> tuple[list[int], list[int]]:
    """(the node processes, the nats-servers): whose CPU a replicated write costs."""
    assert cluster.nats is not None
    servers = cluster.nats.servers if hasattr(cluster.nats, "servers") else [cluster.nats]
    nodes = [p.pid for p in cluster.procs if p.pid is not None]
    return nodes, [s.pid for s in servers if s.pid is not None]


def fsync_floor(directory: Path, n: int) -> list[float]:
    """Seconds per small write + os.fsync in ``directory`` (the members' disk)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for i in range(n):
            started = time.perf_counter()
            os.write(fd, f"{i:08d}\n".encode())
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return samples


RETRYABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT})


class Proposer:
    """One benchmark client: RaftClient proposals that survive a leader change.

    RaftClient retries a timeout or not_leader itself; a member that stops while holding
    our proposal answers ``unavailable`` (the entry may or may not commit), which it
    raises. We propose again under the SAME request id (the group's dedup table applies
    it at most once) and count it: a proposal that fails over is retried, never lost."""

    def __init__(self, client: RaftClient, attempts: int = 5) -> None:
        self.client, self.attempts, self.failed_over = client, attempts, 0

    async def __call__(self, command: Any, timeout: float = 30.0) -> Any:
        rid = uuid.uuid4().hex
        for attempt in range(self.attempts):
            try:
                return await self.client.propose(command, request_id=rid, timeout=timeout)
            except BrokerError as exc:
                if exc.code not in RETRYABLE or attempt == self.attempts - 1:
                    raise
                self.failed_over += 1
        raise AssertionError("unreachable")

    @property
    def retries(self) -> int:
        return self.client.retries + self.failed_over


def _command(i: int) -> dict[str, Any]:
    return {"op": "put", "key": f"k{i % 64}", "value": i}


async def run_procs_bench(
    *, proposals: int = 1500, concurrency: int = 64, seconds: float = 10.0, rounds: int = 3,
    failovers: int = 3, connections: int = 4, fsync: bool = True,
    tmp_dir: str | Path | None = None, profile_dir: str | Path | None = None,
    handovers: int = 3,
) -> dict[str, Any]:
    """All figures of one run; ``proposals`` sequential and ``seconds`` of closed loop per
    system in total, split over ``rounds``. With ``profile_dir``, each node process runs
    under cProfile and writes ``<node id>-<pid>.prof`` there when it stops gracefully (a
    killed one writes nothing: use ``failovers=0``)."""
    ids = ["node-1", "node-2", "node-3"]
    services: dict[str, dict[str, Any]] = {"registry": {"enabled": False},
                "consensus": {"groups": [{"name": GROUP, "members": ids, "fsync": fsync}]}}
    with tempfile.TemporaryDirectory(prefix="ba-bench-consensus-", dir=tmp_dir) as tmp:
        env = {"BA_NODE__LOG_LEVEL": "warning"}
        if profile_dir is not None:
            env.update(profiled(Path(profile_dir), Path(tmp) / "profile-hook"))
        cluster = BenchCluster(Path(tmp), nodes=3, services=services, extra_env=env)
        try:
            started = time.perf_counter()
            await cluster.start()
            up = time.perf_counter() - started
            out = await _measure(cluster, ids, proposals=proposals, concurrency=concurrency,
                                  seconds=seconds, rounds=max(1, rounds),
                                  failovers=failovers, connections=max(1, connections),
                                  fsync=fsync, handovers=handovers)
            out["phase_s"] = {"start": round(up, 1), **out["phase_s"]}
            return out
        finally:
            await asyncio.to_thread(cluster.stop)


async def _measure(cluster: LocalCluster, ids: list[str], *, proposals: int,
                   concurrency: int, seconds: float, rounds: int, failovers: int,
                   connections: int, fsync: bool, handovers: int = 0) -> dict[str, Any]:
    assert cluster.nats is not None
    one = [cluster.nats.urls[0]]  # the raw baseline: both ends on the same server
    node_sec, client_sec = cluster.security(Role.NODE), cluster.security(Role.CLIENT)
    probe_a = await connect_client(one, security=node_sec)
    probe_b = await connect_client(one, security=node_sec)
    # the members sit on different servers: a leader-follower leg crosses a route
    probe_c = await connect_client([cluster.nats.urls[1]], security=node_sec)
    clients = [await connect_client(cluster.urls, security=client_sec)
               for _ in range(connections)]
    js_ncs = [await connect_client(cluster.urls, security=node_sec) for _ in range(connections)]
    begun = time.perf_counter()
    try:
        request = encode({"command": _command(0), "request_id": "x" * 32})
        raw = await raw_rtt(probe_a, probe_b, max(50, proposals // 2), request)
        routed = await raw_rtt(probe_a, probe_c, max(50, proposals // 2), request)
        fsyncs = await asyncio.to_thread(fsync_floor, cluster.base_dir / ids[0],
                                         max(50, proposals // 4))
        rafts = [Proposer(RaftClient(clients[c % connections], GROUP)) for c in range(concurrency)]
        kvs = [await r3_bucket(nc) for nc in js_ncs]
        await rafts[0](_command(0))  # a leader is elected

        async def commit(c: int, i: int) -> object:
            return await rafts[c](_command(i))

        async def put(c: int, i: int) -> object:
            return await kvs[c % connections].put(f"k{i % 64}", encode(_command(i)))

        await put(0, 0)
        phases = {"baselines": time.perf_counter()}
        seq: dict[str, list[list[float]]] = {"raft": [], "js": []}
        loaded: dict[str, list[Loaded]] = {"raft": [], "js": []}
        changes: list[int] = []
        nodes, servers = server_pids(cluster)
        cpu: dict[str, list[float]] = {"raft": [], "js": []}
        per_request: list[float] = []  # proposals per request message (batches: > 1)
        for _ in range(rounds):
            seq["raft"].append(await sequential(commit, max(1, proposals // rounds)))
            seq["js"].append(await sequential(put, max(1, proposals // rounds)))
            seen, used = await member_metrics(cluster), _cpu_seconds(nodes + servers)
            loaded["raft"].append(await closed_loop(commit, concurrency, seconds / rounds))
            cpu["raft"].append((_cpu_seconds(nodes + servers) - used) / loaded["raft"][-1].count)
            now = await member_metrics(cluster)
            changes.append(_term(now) - _term(seen))
            asked = _total(now, _REQUESTS) - _total(seen, _REQUESTS)
            if asked > 0:
                per_request.append((_total(now, _PROPOSALS) - _total(seen, _PROPOSALS)) / asked)
            used = _cpu_seconds(servers)
            loaded["js"].append(await closed_loop(put, concurrency, seconds / rounds))
            cpu["js"].append((_cpu_seconds(servers) - used) / loaded["js"][-1].count)
        retries_c64 = sum(r.retries for r in rafts)
        leader_c64 = rafts[0].client.leader
        phases["rounds"] = time.perf_counter()
        failover = [await _failover(cluster, rafts[0].client, ids,
                                    restart=k < failovers - 1 or handovers > 0)
                    for k in range(failovers)]
        phases["failovers"] = time.perf_counter()
        planned = [await planned_restart(cluster, rafts[0].client, ids, restart=True,
                                         caught_up=_caught_up) for _ in range(handovers)]
        phases["handovers"] = time.perf_counter()
    finally:
        for nc in [probe_a, probe_b, probe_c, *clients, *js_ncs]:
            await nc.close()
    marks = [begun, *phases.values()]
    spent = {name: round(b - a, 1) for name, a, b in zip(phases, marks, marks[1:], strict=False)}
    return _report(raw, fsyncs, seq, loaded, changes, failover, retries_c64, cpu,
                   planned=planned, per_request=per_request, routed=routed,
                   proposals=proposals,
                   concurrency=concurrency, seconds=seconds, rounds=rounds, fsync=fsync,
                   phase_s=spent, leader=leader_c64)


async def _failover(cluster: LocalCluster, client: RaftClient, ids: list[str], *,
                    restart: bool) -> float:
    """kill -9 the leader's process; seconds until the next commit through ``client``.
    With ``restart``, the node comes back and its member catches up before we return."""
    await client.propose(_command(1), timeout=30)  # learns the current leader
    leader = client.leader
    if leader not in ids:
        raise RuntimeError(f"no leader named in the commit reply ({leader!r})")
    index = ids.index(leader)
    await asyncio.to_thread(cluster.kill, index)
    started = time.perf_counter()
    await client.propose(_command(2), timeout=30)
    took = time.perf_counter() - started
    if restart:
        await cluster.restart(index)
        await _caught_up(cluster, ids[index])
    return took


async def _caught_up(cluster: LocalCluster, node_id: str, timeout: float = 30.0) -> None:
    """Until ``node_id``'s member has applied what the leader had committed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        metrics = await member_metrics(cluster)
        leaders = [m for m in metrics.values() if m.get("ba_raft_is_leader") == 1]
        mine = metrics.get(node_id, {})
        if leaders and mine.get("ba_raft_applied_index", -1) >= leaders[0].get(
                "ba_raft_commit_index", 0):
            return
        await asyncio.sleep(0.05)  # sleep-ok: polling another process's metrics
    raise TimeoutError(f"{node_id} did not catch up in {timeout}s")


def _handover_figures(planned: list[tuple[float, float, int]], raw: list[float],
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


def _ratio(name: str, ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """The median per-round ratio (each round measured both systems back to back)."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
    low, high = ci95(ratios)
    return {name: round(statistics.median(ratios), 3) if ratios else float("nan"),
            f"{name}_ci95": [round(low, 3), round(high, 3)]}


def _commit_floor(raw: list[float], routed: list[float], fsyncs: list[float],
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


def _report(raw: list[float], fsyncs: list[float], seq: dict[str, list[list[float]]],
            loaded: dict[str, list[Loaded]], changes: list[int], failover: list[float],
            retries_c64: int, cpu: dict[str, list[float]] | None = None,
            planned: list[tuple[float, float, int]] | None = None,
            per_request: list[float] | None = None, routed: list[float] | None = None,
            **params: Any) -> dict[str, Any]:
    def flat(rounds: list[list[float]]) -> list[float]:
        return [x for r in rounds for x in r]

    raft_c, js_c = loaded["raft"], loaded["js"]
    p50 = [[percentile(r, 50) for r in seq[k]] for k in ("raft", "js")]
    p99c = [[percentile(r.samples, 99) for r in loaded[k]] for k in ("raft", "js")]
    rate = [[r.count / r.seconds for r in loaded[k]] for k in ("raft", "js")]
    total_changes = sum(changes)
    return {
        **figure("commit_us_p50", flat(seq["raft"]), 50, 1e6),
        **figure("commit_us_p99", flat(seq["raft"]), 99, 1e6),
        **figure("commit_us_p99_c64", flat([r.samples for r in raft_c]), 99, 1e6),
        **rate_figure("commits_per_s_c64", [r.count for r in raft_c], [r.seconds for r in raft_c]),
        "leader_changes_c64": total_changes,
        "leader_changes_c64_ci95": [total_changes, total_changes],  # a count, not a sample
        "leader_changes_c64_per_round": changes,
        "retries_c64": retries_c64,
        **figure("failover_ms", failover, 50, 1e3),
        "failover_ms_samples": [round(x * 1e3, 1) for x in failover],
        **_handover_figures(planned or [], raw, fsyncs),
        **figure("raw_rtt_us_p50", raw, 50, 1e6),
        **figure("fsync_us_p50", fsyncs, 50, 1e6),
        **figure("js_r3_put_us_p50", flat(seq["js"]), 50, 1e6),
        **figure("js_r3_put_us_p99", flat(seq["js"]), 99, 1e6),
        **figure("js_r3_put_us_p99_c64", flat([r.samples for r in js_c]), 99, 1e6),
        **rate_figure("js_r3_puts_per_s_c64", [r.count for r in js_c], [r.seconds for r in js_c]),
        # CPU of the nodes and nats-servers (ours) or the nats-servers (theirs) per write
        **figure("cpu_us_per_commit_c64", (cpu or {}).get("raft", []), 50, 1e6),
        **figure("js_r3_cpu_us_per_put_c64", (cpu or {}).get("js", []), 50, 1e6),
        # how many proposals one client request carried, on average (batches: > 1)
        **figure("proposals_per_request_c64", per_request or [], 50, 1),
        **_ratio("commit_to_js_r3_p50_ratio", p50[0], p50[1]),
        **_ratio("commit_p99_c64_to_js_r3_ratio", p99c[0], p99c[1]),
        **_ratio("commits_c64_to_js_r3_ratio", rate[0], rate[1]),
        **_ratio("commit_to_rtt_ratio", p50[0], [statistics.median(raw)] * len(p50[0])),
        **_ratio("commit_to_fsync_ratio", p50[0], [statistics.median(fsyncs)] * len(p50[0])),
        **_commit_floor(raw, routed or [], fsyncs, statistics.median(flat(seq["js"]))),
        "members": 3, "processes": 3, "nats_servers": 3, "in_process": False,
        "js_sync_interval": "always", **params,
    }
