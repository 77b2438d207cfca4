"""Registry and KV feeds: Sybil voter records, damaged records of live agents, corrupt or
foreign values in mirrored buckets.

Each attack runs as the least-privileged principal that could try it: a client for the
agents bucket (refused by permissions), a node (another node's credentials: "mallory") for
writes only nodes may make. A node hosting agents runs in-process (``RegistryNodeService``
with a stand-in node) with fast liveness timers. Waits are for the event (the healed record
in a view, the skipped key in a mirror) with a timeout, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY
from structlog.testing import capture_logs
from typer.testing import CliRunner

from broker_agents import codec, kvskip
from broker_agents.core.registry.record import AgentRecord, NodeRecord
from broker_agents.kv import open_bucket
from broker_agents.kvmirror import KvMirror
from broker_agents.ratelog import RateLimitedLog
from broker_agents.registry.store import decode_agent
from broker_agents.registry.view import LocalView, NodeView
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.cli.registry import app
from node.embedded import NatsServer
from node.registry import RegistryNodeService
from tests.secured import discovery_env
from tests.security.violations import Violations

S = Subjects()
AGENTS = S.bucket("agents")
Connect = Callable[..., Coroutine[Any, Any, NATS]]
FAST = {"heartbeat_interval": 0.2, "window": 1.0, "grace": 0.5, "reap_interval": 0.2}
GARBAGE = b"\xc1 not msgpack"


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def counts(name: str, value: float, timeout: float = 5.0, **labels: str) -> float:
    """Wait until a counter reaches ``value``, and return it: a heal counts once its write
    is acknowledged, which a view watching the bucket may see before the writer does."""
    deadline = asyncio.get_running_loop().time() + timeout
    while counted(name, **labels) < value:
        assert asyncio.get_running_loop().time() < deadline, (name, labels, counted(name, **labels))
        await asyncio.sleep(0.01)  # sleep-ok: a Prometheus counter has no event to await
    return counted(name, **labels)


def _agent(agent_id: str) -> Any:
    """What the registry service reads of a hosted agent."""
    return types.SimpleNamespace(agent_id=agent_id, config={}, public_key=None,
                                 all_capabilities=lambda: ["voter"])


class HostingNode:
    """A node (id ``node_id``) hosting agents, as the daemon drives its registry service."""

    def __init__(self, nc: NATS, node_id: str = "n1") -> None:
        self.nc = nc
        self.id = node_id
        self.subjects = S
        self.agents: dict[str, Any] = {}
        self.service = RegistryNodeService(**FAST)

    def on_reconnect(self, hook: Any) -> None:
        return None

    async def start(self, *agent_ids: str) -> None:
        await self.service.start(self)  # type: ignore[arg-type]
        for agent_id in agent_ids:
            self.agents[agent_id] = agent = _agent(agent_id)
            await self.service.agent_started(agent, restarts=0)

    async def advertised(self, view: LocalView, agent_id: str) -> AgentRecord:
        """The record the node advertised for ``agent_id``, once ``view`` shows it."""
        await view.wait_for(lambda: view.get(agent_id) is not None)
        record = view.get(agent_id)
        assert record is not None and record.node_id == self.id
        return record


@pytest.fixture
async def node(connect: Connect) -> AsyncIterator[HostingNode]:
    hosting = HostingNode(await connect(Role.NODE))
    await hosting.start("alice", "bob")
    yield hosting
    await hosting.service.stop()


@pytest.fixture
async def view(connect: Connect) -> AsyncIterator[LocalView]:
    """What every other node (and the CLI) sees of the agents bucket."""
    watcher = await LocalView.open(await connect(Role.OBSERVER), name="security-view")
    yield watcher
    await watcher.stop()


async def _healed(view: LocalView, agent_id: str, expected: AgentRecord, after: int) -> None:
    """The view holds the node's advertised record again, written after ``after``."""
    await view.wait_for(lambda: view.get(agent_id) == expected
                        and (view.revision_of(agent_id) or 0) > after, timeout=10)


# -- 1. Sybil voter records -------------------------------------------------------------


async def test_a_client_cannot_write_sybil_voter_records(
        node: HostingNode, view: LocalView, connect: Connect) -> None:
    await view.wait_for(lambda: len(view) == 2)
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    for i in range(5):
        subject = f"$KV.{AGENTS}.sybil-{i}"
        await mallory.publish(subject, codec.encode({
            "agent_id": f"sybil-{i}", "name": "x", "node_id": "n1", "capabilities": ["voter"]}))
        await violations.expect(subject)
    kv = await open_bucket(node.nc.jetstream(), AGENTS)
    assert sorted(await kv.keys()) == ["alice", "bob"]
    assert [r.agent_id for r in view.find_by_capability("voter")] == ["alice", "bob"]


async def test_sybil_records_of_a_node_that_does_not_exist_are_reaped(
        node: HostingNode, view: LocalView, connect: Connect) -> None:
    """What the reaper already did: a record naming a node with no heartbeat is marked
    unhealthy (so discovery, which counts only healthy agents, stops counting it) after
    ``window`` and removed after ``window + grace``."""
    mallory = await open_bucket((await connect(Role.NODE, user="mallory")).jetstream(), AGENTS)
    for i in range(3):
        await mallory.put(f"sybil-{i}", codec.encode(AgentRecord(
            agent_id=f"sybil-{i}", name="x", node_id="ghost", capabilities=["voter"])))
    await view.wait_for(lambda: len(view.find_by_capability("voter")) == 5)
    await view.wait_for(lambda: {r.agent_id for r in view.find_by_health("healthy")}
                        == {"alice", "bob"}, timeout=10)
    await view.wait_for(lambda: sorted(r.agent_id for r in view.all_agents())
                        == ["alice", "bob"], timeout=10)


async def test_sybil_records_claiming_a_live_node_are_removed_by_that_node(
        node: HostingNode, view: LocalView, connect: Connect) -> None:
    """The reaper never judges a live node's records; the node itself knows what it runs
    and removes records that claim it for anything else."""
    alice = await node.advertised(view, "alice")
    before = counted("ba_registry_healed_total", reason="orphan")
    mallory = await open_bucket((await connect(Role.NODE, user="mallory")).jetstream(), AGENTS)
    for i in range(3):
        await mallory.put(f"sybil-{i}", codec.encode(AgentRecord(
            agent_id=f"sybil-{i}", name="x", node_id="n1", capabilities=["voter"])))
    await view.wait_for(lambda: len(view.find_by_capability("voter")) == 5)
    await view.wait_for(lambda: [r.agent_id for r in view.find_by_capability("voter")]
                        == ["alice", "bob"], timeout=10)
    assert await counts("ba_registry_healed_total", before + 3, reason="orphan") == before + 3
    assert view.get("alice") == alice


# -- 2. damaged records of live agents are healed ---------------------------------------


@pytest.mark.parametrize("damage", ["overwritten", "foreign", "corrupt", "deleted"])
async def test_a_damaged_record_of_a_live_agent_is_healed(
        node: HostingNode, view: LocalView, connect: Connect, damage: str) -> None:
    honest, bob = await node.advertised(view, "alice"), await node.advertised(view, "bob")
    before = counted("ba_registry_healed_total", reason=damage)
    mallory = await open_bucket((await connect(Role.NODE, user="mallory")).jetstream(), AGENTS)
    with capture_logs() as logs:
        if damage == "deleted":
            await mallory.delete("alice")
            revision = (await mallory.status()).stream_info.state.last_seq
        else:
            value = {
                "overwritten": codec.encode(honest.model_copy(update={"capabilities": []})),
                "foreign": codec.encode(honest.model_copy(update={"node_id": "mallory"})),
                "corrupt": GARBAGE,
            }[damage]
            revision = await mallory.put("alice", value)
        await _healed(view, "alice", honest, revision)
        assert await counts("ba_registry_healed_total", before + 1, reason=damage) == before + 1
    assert any(e["event"] == "registry: healed a hosted agent's record"
               and e["agent_id"] == "alice" and e["reason"] == damage for e in logs), logs
    assert view.get("bob") == bob


async def test_another_agents_record_under_a_live_agents_key_is_healed(
        node: HostingNode, view: LocalView, connect: Connect) -> None:
    honest, bob = await node.advertised(view, "alice"), await node.advertised(view, "bob")
    mallory = await open_bucket((await connect(Role.NODE, user="mallory")).jetstream(), AGENTS)
    before = counted("ba_kv_records_skipped_total", bucket="security-view", reason="foreign")
    revision = await mallory.put("alice", codec.encode(bob))
    await _healed(view, "alice", honest, revision)
    assert counted("ba_kv_records_skipped_total", bucket="security-view",
                   reason="foreign") == before + 1


async def test_a_node_and_an_attacker_overwriting_forever_is_bounded(
        node: HostingNode, view: LocalView, connect: Connect) -> None:
    """Each overwrite is healed, but no faster than one heal per agent per heartbeat
    interval (plus the beat's own pass): the node never storms the bucket."""
    honest = await node.advertised(view, "alice")
    mallory = await open_bucket((await connect(Role.NODE, user="mallory")).jetstream(), AGENTS)
    before = counted("ba_registry_healed_total", reason="corrupt")
    beats = node.service.heartbeater.beats
    revision = 0
    for _ in range(20):
        revision = await mallory.put("alice", GARBAGE)
    await _healed(view, "alice", honest, revision)
    heals = await counts("ba_registry_healed_total", before + 1, reason="corrupt") - before
    assert 1 <= heals <= 2 * (node.service.heartbeater.beats - beats + 1)


# -- 3. corrupt or foreign records in mirrored buckets ----------------------------------


async def test_corrupt_and_foreign_records_never_stop_a_mirror(
        connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node writes garbage and another key's record into a mirrored bucket: each is
    skipped (read as absent), counted and logged with its key, and the records written
    after them still arrive."""
    monkeypatch.setattr(kvskip, "_log", RateLimitedLog(structlog.get_logger()))
    nc = await connect(Role.NODE, user="mallory")
    kv = await open_bucket(nc.jetstream(), S.bucket("nodes"))
    await kv.put("n1", codec.encode(NodeRecord(node_id="n1", last_heartbeat=1.0)))
    await kv.put("junk", GARBAGE)
    await kv.put("alias", codec.encode(NodeRecord(node_id="n1", last_heartbeat=1.0)))
    with capture_logs() as logs:
        nodes = await NodeView.open(await connect(Role.OBSERVER))
        try:
            await kv.put("deep", b"\x91" * 10_000)  # nested 10,000 deep: over the bound
            await kv.put("n2", codec.encode(NodeRecord(node_id="n2", last_heartbeat=1.0)))
            assert await nodes.sync()
            assert sorted(nodes.values) == ["n1", "n2"]
            assert {k: s.reason for k, s in nodes.skipped.items()} == {
                "junk": "undecodable", "alias": "foreign", "deep": "undecodable"}
        finally:
            await nodes.stop()
    logged = {e["kv_key"] for e in logs if e["event"] == "kv.record_skipped"}
    assert {"junk", "alias"} <= logged  # "deep" shares junk's reason: one line per window
    assert counted("ba_kv_records_skipped_total", bucket=S.bucket("nodes"),
                   reason="undecodable") >= 2


async def test_a_sink_that_fails_on_a_value_does_not_stop_its_feed(connect: Connect) -> None:
    """Whatever a mirror fails on is read as absent: before, the failure ended the
    listing, which was retried forever, and the feed never became ready."""

    class Picky(KvMirror):
        def apply_entry(self, key: str, value: bytes | None, revision: int) -> None:
            if value is not None and value.startswith(b"boom"):
                raise RuntimeError("the sink cannot take this")
            super().apply_entry(key, value, revision)

    nc = await connect(Role.NODE)
    kv = await open_bucket(nc.jetstream(), S.bucket("reputation"))
    await kv.put("a", b"boom")
    await kv.put("b", b"fine")
    mirror = Picky(kv, S.bucket("reputation"))
    before = counted("ba_kv_records_skipped_total", bucket=S.bucket("reputation"),
                     reason="sink_error")
    await mirror.start(timeout=5)
    try:
        await kv.put("c", b"boom too")
        await kv.put("d", b"fine too")
        assert await mirror.sync()
        assert sorted(mirror.values) == ["b", "d"]
    finally:
        await mirror.stop()
    assert counted("ba_kv_records_skipped_total", bucket=S.bucket("reputation"),
                   reason="sink_error") == before + 2


def test_the_registry_cli_shows_corrupt_records_as_such(nats_server: NatsServer) -> None:
    async def seed() -> None:
        from tests.secured import connect_as
        nc = await connect_as(nats_server, Role.NODE, "mallory")
        kv = await open_bucket(nc.jetstream(), AGENTS)
        await kv.put("a1", codec.encode(AgentRecord(agent_id="a1", name="x", node_id="n1")))
        await kv.put("bad", GARBAGE)
        await kv.put("alias", codec.encode(AgentRecord(agent_id="a1", name="x", node_id="n1")))
        await nc.close()
    asyncio.run(seed())
    runner = CliRunner()
    env = discovery_env(nats_server)
    listed = runner.invoke(app, ["ls"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "agents (1)" in listed.stdout and "2 corrupt or foreign record(s)" in listed.stderr
    assert "bad" in listed.stderr and "alias" in listed.stderr
    as_json = runner.invoke(app, ["find", "--node", "n1", "--json"], env=env)
    assert [a["agent_id"] for a in json.loads(as_json.stdout)] == ["a1"]
    assert {s["key"]: s["reason"] for s in json.loads(as_json.stderr)["skipped"]} == {
        "alias": "foreign", "bad": "undecodable"}
    got = runner.invoke(app, ["get", "bad", "--json"], env=env)
    assert got.exit_code == 1
    error = json.loads(got.stdout)["error"]
    assert error["code"] == "malformed" and error["details"]["reason"] == "undecodable"
    queried = runner.invoke(app, ["query", "node_id eq n1"], env=env)
    assert queried.exit_code == 0 and "bad" in queried.stderr


# -- the record validators, on anything a node could write --------------------------------

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=12)
GOOD = AgentRecord(agent_id="a1", name="x", node_id="n1", capabilities=["voter"])


@st.composite
def stored_values(draw: st.DrawFn) -> bytes:
    """Bytes under a key: garbage, a record with fields broken, or a valid record."""
    kind = draw(st.sampled_from(["bytes", "broken", "valid"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    data: dict[str, Any] = GOOD.model_dump(mode="json")
    if kind == "broken":
        for field in draw(st.lists(st.sampled_from([*data, "extra"]), min_size=1,
                                   max_size=3)):
            data[field] = draw(JSONISH)
    else:
        data["agent_id"] = draw(st.sampled_from(["a1", "a2"]))
    return codec.encode(data, as_json=draw(st.booleans()))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", "a.b", "n1"]), stored_values()),
                min_size=1, max_size=8))
def test_whatever_a_node_writes_a_view_and_a_mirror_keep_only_usable_records(
        entries: list[tuple[str, bytes]]) -> None:
    view = LocalView(None, name="hypothesis-agents")  # type: ignore[arg-type]
    nodes = NodeView(None, name="hypothesis-nodes")  # type: ignore[arg-type]
    for revision, (key, value) in enumerate(entries, start=1):
        view.apply_entry(key, value, revision)
        nodes.apply_entry(key, value, revision)
        for sink in (view, nodes):
            assert sink.applied_revision == revision  # the feed goes on
    last = {key: value for key, value in entries}
    for key, value in last.items():
        record, skipped = view.get(key), view.skipped.get(key)
        assert (record is None) != (skipped is None)
        if record is not None:
            assert record.agent_id == key and record == decode_agent(value)
        else:
            assert skipped is not None and skipped.reason in kvskip.REASONS
            assert skipped.reason != kvskip.SINK_ERROR  # foreseen by the checks
        assert (key in nodes.values) != (key in nodes.skipped)
