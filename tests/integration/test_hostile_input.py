"""Hostile payloads at every public subject of a running node: nested, huge and odd-header
requests each get a structured reply in the encoding they came in, and the node keeps
serving afterwards.

One node process hosts sample agents, the coordinator (and a voter), an auctioneer, the
registry service, a variables engine and two one-member consensus groups. The caller's
encoding is decided here from first principles: a ``content-type`` (any case) that names
JSON or msgpack wins; otherwise a payload starting with ``{``, ``[`` or whitespace is JSON.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.errors import TimeoutError as NatsTimeout

from broker_agents import codec
from broker_agents.coord.schema import PROTOCOLS
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.registry.service import OPS
from broker_agents.samples import Calculate
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.cluster import LocalCluster

S = Subjects()
AGENT_MAX_PAYLOAD = 256 * 1024  # the node's agent limit, below the server's 1 MB
SERVER_MAX_PAYLOAD = 1024 * 1024
SPACE = "hostile"
FAMILIES: dict[str, list[str]] = {
    "agents": [S.agent("calc"), S.cap("math")],
    "coord": [S.coord(p) for p in PROTOCOLS] + [S.coord("no-such-protocol")],
    "registry": [S.registry(op) for op in OPS],
    "variables": [S.variable_feedback(SPACE)],
    "auction": [S.coord("auction"), S.auction("a-unknown", "bid")],
    "raft": [S.raft("kv", "propose"), S.raft("kv", "read")],
}
SERVICES = {"consensus": {"groups": [
    {"name": "kv", "members": ["node-1"]},
    {"name": "variables", "members": ["node-1"], "state_machine": "variables"}]}}
AGENTS = [[
    {"class": "broker_agents.samples:CalculatorAgent", "id": "calc", "kwargs": {}},
    {"class": "broker_agents.coord.coordinator:CoordinatorAgent", "id": "coordinator",
     "kwargs": {}},
    {"class": "broker_agents.coord.voter:VoterAgent", "id": "v0", "kwargs": {"choice": "yes"}},
    {"class": "broker_agents.auction.auctioneer:AuctioneerAgent", "id": "auctioneer",
     "kwargs": {}},
    {"class": "broker_agents.variables.engine_agent:AdaptationEngineAgent", "id": "engine",
     "kwargs": {"spaces": [SPACE]}},
]]


# -- the node, driven from an event loop in a thread (hypothesis tests are sync) ----------

class NodeThread:
    def __init__(self, base: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = LocalCluster(base, nodes=1, agents=AGENTS, services=SERVICES,
                                    extra_env={"BA_NODE__LOG_LEVEL": "warning",
                                               "BA_NODE__MAX_PAYLOAD": str(AGENT_MAX_PAYLOAD)})
        self.call(self.cluster.start())
        self.nc = self.call(self.cluster.client())
        self.call(self._engine_answers())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    async def _engine_answers(self) -> None:
        """The engine answers feedback once its group has a leader: wait for that."""
        deadline = self.loop.time() + 30
        body = codec.encode({"space": SPACE, "reward": 1.0})
        while True:
            try:
                await nats_request(self.nc, S.variable_feedback(SPACE), body, timeout=0.5)
                return
            except NatsTimeout:
                if self.loop.time() > deadline:
                    raise

    async def _ask(self, subject: str, data: bytes, headers: dict[str, str] | None
                   ) -> bytes:
        # Signed, as any client's requests are: what is hostile here is the payload.
        reply = await nats_request(self.nc, subject, data, timeout=10, headers=headers,
                                   signed=True)
        return bytes(reply.data)

    def ask(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> bytes:
        raw: bytes = self.call(self._ask(subject, data, headers or None))
        return raw

    def still_serving(self) -> None:
        raw = self.ask(S.agent("calc"), codec.encode(envelope(Calculate(op="add", a=1, b=2))))
        assert codec.decode(raw)["value"] == 3
        assert all(p.process is not None and p.process.poll() is None
                   for p in self.cluster.procs)

    def close(self) -> None:
        self.call(self.nc.close())
        self.cluster.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    hosted = NodeThread(Path(tmp_path_factory.mktemp("hostile")))
    yield hosted
    hosted.close()


# -- what a reply must look like ----------------------------------------------------------

def expects_json(data: bytes, headers: dict[str, str] | None) -> bool:
    for key, value in (headers or {}).items():
        if key.lower() == "content-type" and value:
            if "json" in value.lower():
                return True
            if "msgpack" in value.lower():
                return False
    return data[:1] in (b"{", b"[", b" ", b"\t", b"\r", b"\n")


def structured(raw: bytes, as_json: bool) -> dict[str, Any]:
    """The reply parsed strictly in the expected encoding; a result or a coded error."""
    reply = json.loads(raw) if as_json else msgpack.unpackb(raw, strict_map_key=False)
    assert isinstance(reply, dict), reply
    if "error" in reply:
        err = reply["error"]
        assert set(reply) == {"error"} and set(err) == {"code", "message", "details"}, reply
        assert err["code"] in {c.value for c in ErrorCode}, err
    return reply


def error_code(reply: dict[str, Any]) -> str | None:
    err = BrokerError.from_payload(reply)
    return None if err is None else err.code.value


UNKNOWN_PROTOCOL = S.coord("no-such-protocol")


def refusal(subject: str, code: str) -> str:
    """The code a hostile request must get there: an unknown protocol is named first."""
    return "unknown_protocol" if subject == UNKNOWN_PROTOCOL else code


# -- strategies: each case is (payload, headers, the error code it must get or None) -------

Case = tuple[bytes, dict[str, str] | None, str | None]


def nest(depth: int, style: str) -> bytes:
    if style == "json-array":
        return b"[" * depth + b"1" + b"]" * depth
    if style == "json-object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if style == "json-in-envelope":
        return b'{"type":"calculate","command":' + b"[" * depth + b"]" * depth + b"}"
    return b"\x91" * depth + b"\x01"  # msgpack arrays


@st.composite
def nested(draw: st.DrawFn) -> Case:
    depth = draw(st.integers(min_value=codec.MAX_DEPTH + 1, max_value=5_000))
    style = draw(st.sampled_from(["json-array", "json-object", "json-in-envelope", "msgpack"]))
    headers = ({"content-type": "application/json"} if style.startswith("json")
               and draw(st.booleans()) else None)
    return nest(depth, style), headers, "malformed"


@st.composite
def huge(draw: st.DrawFn) -> Case:
    """Large requests, some over the agents' limit. A field a handler may echo, of
    two-byte characters (six bytes each once JSON-escaped), makes some replies larger
    than the server carries."""
    size = draw(st.integers(min_value=64 * 1024, max_value=800 * 1024))
    char = draw(st.sampled_from(["x", "\u00e9"]))
    blob = char * (size // len(char.encode()))
    shape = draw(st.sampled_from(["string", "echoed", "list"]))
    if shape == "string":
        value: Any = blob
    elif shape == "echoed":
        key = draw(st.sampled_from(["type", "agent_id", "command", "query", "proposal",
                                    "space", "auction_id", "bidder"]))
        value = {key: blob, "type": blob} if key != "type" else {"type": blob}
        value = {k: v[: len(v) // len(value)] for k, v in value.items()}
    else:
        value = list(range(size // 8))
    as_json = draw(st.booleans())
    data = (json.dumps(value, ensure_ascii=False).encode() if as_json
            else codec.encode(value))
    assert len(data) < SERVER_MAX_PAYLOAD - 4096
    return data, ({"content-type": "application/json"} if as_json else None), None


CTYPE_KEYS = st.sampled_from(["content-type", "Content-Type", "CONTENT-TYPE", "Content-type"])
CTYPE_VALUES = st.sampled_from([
    "application/json", "Application/JSON", "application/json; charset=utf-8",
    "application/msgpack", "application/x-msgpack", "text/plain", "application/xml", "",
    "garbage", "json", "msgpack"])
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(["Status", "Nats-Msg-Id", "ba-raft-hops", "X-Thing", "Description"]),
    st.sampled_from(["503", "100", "abc", "-1", "99999999999999999999", "x" * 512, "ok"]),
    max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)


@st.composite
def odd_headers(draw: st.DrawFn) -> Case:
    headers = draw(EXTRA_HEADERS)
    if draw(st.booleans()):
        headers[draw(CTYPE_KEYS)] = draw(CTYPE_VALUES)
    kind = draw(st.sampled_from(["bytes", "json", "msgpack"]))
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=64))
    else:
        data = codec.encode(draw(json_values), as_json=kind == "json")
    return data, headers or None, None


hostile = nested() | huge() | odd_headers()


def check(node: NodeThread, subject: str, data: bytes, headers: dict[str, str] | None
          ) -> dict[str, Any]:
    raw = node.ask(subject, data, headers)
    return structured(raw, expects_json(data, headers))


# -- deterministic reproductions ----------------------------------------------------------

DEEP_JSON = b"[" * 1_000 + b"]" * 1_000


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_json_nested_a_thousand_deep_is_malformed_everywhere(node: NodeThread,
                                                             family: str) -> None:
    for subject in FAMILIES[family]:
        reply = check(node, subject, DEEP_JSON, None)
        assert error_code(reply) == refusal(subject, "malformed"), (subject, reply)
    node.still_serving()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_garbage_with_a_json_content_type_is_answered_in_json(node: NodeThread,
                                                              family: str) -> None:
    for subject in FAMILIES[family]:
        for headers in ({"Content-Type": "Application/JSON"},
                        {"CONTENT-TYPE": "application/json"}):
            reply = check(node, subject, b"\xff\x00garbage", headers)
            assert error_code(reply) == refusal(subject, "malformed"), (subject, reply)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_content_type_we_do_not_speak_is_malformed(node: NodeThread, family: str) -> None:
    for subject in FAMILIES[family]:
        reply = check(node, subject, b'{"a": 1}', {"content-type": "text/plain"})
        assert error_code(reply) == refusal(subject, "malformed"), (subject, reply)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_status_header_in_a_request_is_not_echoed_into_its_reply(node: NodeThread,
                                                                  family: str) -> None:
    """nats-py's ``Msg.respond`` copies the request's headers into the reply: a request
    carrying ``Status: 503`` then read as "no responders" to its caller."""
    for subject in FAMILIES[family]:
        reply = check(node, subject, b"\x00", {"Status": "503"})
        assert error_code(reply) is not None, (subject, reply)


ECHOED_FIELDS = ["type", "agent_id", "command", "query", "proposal", "space", "bidder"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fields_a_handler_may_echo_never_silence_it(node: NodeThread, family: str) -> None:
    """A 240 kB field of two-byte characters, six bytes each when echoed in JSON: any
    handler that names it twice in an error would exceed the server's max payload."""
    for subject in FAMILIES[family]:
        for field in ECHOED_FIELDS:
            data = json.dumps({field: "\u00e9" * 120_000}, ensure_ascii=False).encode()
            reply = check(node, subject, data, None)
            assert reply, (subject, field)
    node.still_serving()


def test_an_agent_request_over_its_limit_is_too_large(node: NodeThread) -> None:
    data = codec.encode({"type": "calculate", "data": "x" * AGENT_MAX_PAYLOAD}, as_json=True)
    reply = check(node, S.agent("calc"), data, None)
    assert error_code(reply) == "too_large"
    assert BrokerError.from_payload(reply).details["max"] == AGENT_MAX_PAYLOAD  # type: ignore


# -- the hypothesis sweep, one family of subjects at a time -------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(case=hostile, pick=st.integers(min_value=0))
def test_hostile_payloads_get_structured_replies(node: NodeThread, family: str, case: Case,
                                                 pick: int) -> None:
    subjects = FAMILIES[family]
    subject = subjects[pick % len(subjects)]
    data, headers, code = case
    reply = check(node, subject, data, headers)
    if code is not None:
        assert error_code(reply) == refusal(subject, code), (subject, data[:40], reply)
    node.still_serving()


def test_every_component_still_serves_normal_requests(node: NodeThread) -> None:
    """Run last in the module: after everything above, each service answers as usual."""
    vote = codec.decode(node.ask(S.coord("vote"), codec.encode(
        {"proposal": "p", "participants": ["v0"]}, as_json=True)))
    assert vote["decision"] == "yes", vote
    found = codec.decode(node.ask(S.registry("get"), codec.encode({"agent_id": "calc"})))
    assert found["agent"]["agent_id"] == "calc", found
    put = codec.decode(node.ask(S.raft("kv", "propose"), codec.encode(
        {"command": {"op": "put", "key": "k", "value": "v"}})))
    assert put["result"]["ok"] is True, put
    got = codec.decode(node.ask(S.raft("kv", "read"), codec.encode(
        {"query": {"op": "get", "key": "k"}})))
    assert got["result"]["value"] == "v", got
    ack = codec.decode(node.ask(S.variable_feedback(SPACE), codec.encode(
        {"space": SPACE, "reward": 1.0}, as_json=True)))
    assert ack["space"] == SPACE, ack
    node.still_serving()
