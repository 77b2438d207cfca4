"""``bench consensus`` as a deployment runs it: 3 node daemons (one OS process each,
hosting one member of a consensus group through the ``consensus`` service) on a secured
3-server nats cluster that fsyncs every JetStream write, measured beside JetStream's own
replicated write (an R3 KV put) on that same cluster, in the same run.

Each round alternates the two systems (1 client sequentially, then ``concurrency``
clients in a closed loop), so drift on a shared machine hits both alike; ratios are the
median of the per-round ratios. Each system's clients connect to the server its leader is
on (the Raft leader's node, the R3 stream's leader): JetStream's best case, since a put to
a stream led elsewhere crosses a route first, which cost it up to a third of its 64-client
rate when placement was left to chance. The 64-client phase is repeated with the clients
on another server (``*_remote``); ``placement`` says where the leaders were.

Leader changes come from the members' own metrics (the Raft term: every new leader needs
a new term). The ``concurrency`` RaftClients share
``connections`` connections, so proposals issued together travel as batch requests
(``broker_agents/raft/coalesce.py``); ``proposals_per_request_c64`` says how many one
request carried on average. Failover kills the leader's process with
SIGKILL and times the next commit through a client, which retries under one request id.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.client import RaftClient
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from node.auth.roles import Role
from node.bench.consensus_report import report
from node.bench.handover import planned_restart
from node.bench.jetstream import BUCKET, r3_bucket, start_fsync_cluster
from node.bench.load import Loaded, Op, closed_loop, sequential
from node.bench.proposals import raw_rtt
from node.cluster import LocalCluster
from node.embedded import NatsCluster

GROUP = "bench"
_PROPOSALS, _REQUESTS = "ba_raft_proposals_total", "ba_raft_proposal_requests_total"
_SNAPSHOTS_SENT = "ba_raft_snapshots_sent_total"
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
    urls = cluster.nats.urls
    node_sec, client_sec = cluster.security(Role.NODE), cluster.security(Role.CLIENT)
    opened: list[Any] = []

    async def connect(server: int, security: Any) -> Any:
        opened.append(await connect_client([urls[server]], security=security))
        return opened[-1]

    begun = time.perf_counter()
    try:
        probe_a, probe_b = await connect(0, node_sec), await connect(0, node_sec)
        probe_c = await connect(1, node_sec)  # members sit on different servers: a route
        request = encode({"command": _command(0), "request_id": "x" * 32})
        raw = await raw_rtt(probe_a, probe_b, max(50, proposals // 2), request)
        routed = await raw_rtt(probe_a, probe_c, max(50, proposals // 2), request)
        fsyncs = await asyncio.to_thread(fsync_floor, cluster.base_dir / ids[0],
                                         max(50, proposals // 4))
        homes = await _leader_servers(cluster, await connect(0, client_sec),
                                      await connect(0, node_sec))
        ops: dict[str, Op] = {}
        rafts: list[Proposer] = []
        for system, home in homes.items():
            security = client_sec if system == "raft" else node_sec
            for where, server in (("", home), ("_remote", (home + 1) % len(urls))):
                conns = [await connect(server, security) for _ in range(connections)]
                if system == "raft":
                    ops[system + where], proposers = _raft_writers(conns, concurrency)
                    rafts = rafts or proposers  # the leader's server's: failovers use them
                else:
                    ops[system + where] = await _js_writers(conns)
        for op in ops.values():  # each new connection's first request sets up its inbox
            await asyncio.gather(*(op(c, 0) for c in range(connections)))
        phases = {"baselines": time.perf_counter()}
        seq: dict[str, list[list[float]]] = {"raft": [], "js": []}
        loaded: dict[str, list[Loaded]] = {name: [] for name in ops}
        changes: list[int] = []
        snapshots: list[int] = []  # sent to followers during the loaded rounds
        nodes, servers = server_pids(cluster)
        cpu: dict[str, list[float]] = {"raft": [], "js": []}
        per_request: list[float] = []  # proposals per request message (batches: > 1)
        for _ in range(rounds):
            for system in ("raft", "js"):
                seq[system].append(await sequential(ops[system], max(1, proposals // rounds)))
            seen = await member_metrics(cluster)
            for name, op in ops.items():
                pids = nodes + servers if name == "raft" else servers
                used = _cpu_seconds(pids)
                loaded[name].append(await closed_loop(op, concurrency, seconds / rounds))
                if name in cpu:
                    cpu[name].append((_cpu_seconds(pids) - used) / loaded[name][-1].count)
            now = await member_metrics(cluster)
            changes.append(_term(now) - _term(seen))
            snapshots.append(int(_total(now, _SNAPSHOTS_SENT) - _total(seen, _SNAPSHOTS_SENT)))
            asked = _total(now, _REQUESTS) - _total(seen, _REQUESTS)
            if asked > 0:
                per_request.append((_total(now, _PROPOSALS) - _total(seen, _PROPOSALS)) / asked)
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
        for nc in opened:
            await nc.close()
    marks = [begun, *phases.values()]
    spent = {name: round(b - a, 1) for name, a, b in zip(phases, marks, marks[1:], strict=False)}
    return report(raw, fsyncs, seq, loaded, changes, failover, retries_c64, cpu,
                  planned=planned, per_request=per_request, routed=routed,
                  snapshots=snapshots,
                  proposals=proposals, concurrency=concurrency, seconds=seconds,
                  rounds=rounds, fsync=fsync, phase_s=spent, leader=leader_c64,
                  placement={f"{system}_leader_server": home for system, home in homes.items()})


async def _leader_servers(cluster: LocalCluster, client: Any, node: Any) -> dict[str, int]:
    """Which server each system's leader is on: the Raft leader's node connection (found
    by its peer subscription in the servers' ``/connz``) and the R3 bucket's stream leader.

    Each system is measured with its clients on its leader's server (JetStream's best
    case: a put to a stream led elsewhere crosses a route first) and on another one
    (``_remote``): where a client sits decides the peer's figure by up to a third."""
    raft = RaftClient(client, GROUP)
    await raft.propose(_command(0))  # a leader is elected
    await r3_bucket(node)
    info = await node.jetstream().stream_info(f"KV_{BUCKET}")
    assert isinstance(cluster.nats, NatsCluster) and info.cluster is not None
    names = [server.server_name for server in cluster.nats.servers]
    peer_subject = Subjects().raft(GROUP, str(raft.leader))
    return {"raft": await asyncio.to_thread(_subscriber_server, cluster, peer_subject),
            "js": names.index(info.cluster.leader)}


def _subscriber_server(cluster: LocalCluster, subject: str) -> int:
    """The index of the server where some connection subscribes to ``subject``."""
    assert isinstance(cluster.nats, NatsCluster)
    for index, server in enumerate(cluster.nats.servers):
        url = f"http://127.0.0.1:{server.monitor_port}/connz?subs=1&limit=1024"
        with urllib.request.urlopen(url, timeout=5) as resp:
            conns = json.loads(resp.read()).get("connections") or []
        if any(subject in (conn.get("subscriptions_list") or []) for conn in conns):
            return index
    raise RuntimeError(f"no server has a subscriber to {subject}")


def _raft_writers(conns: list[Any], concurrency: int) -> tuple[Op, list[Proposer]]:
    proposers = [Proposer(RaftClient(conns[c % len(conns)], GROUP)) for c in range(concurrency)]

    async def commit(c: int, i: int) -> object:
        return await proposers[c](_command(i))

    return commit, proposers


async def _js_writers(conns: list[Any]) -> Op:
    kvs = [await nc.jetstream().key_value(BUCKET) for nc in conns]

    async def put(c: int, i: int) -> object:
        return await kvs[c % len(kvs)].put(f"k{i % 64}", encode(_command(i)))

    return put


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
