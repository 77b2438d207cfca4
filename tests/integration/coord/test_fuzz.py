"""Malformed requests at every coordination subject: always a structured error, in the
request's encoding, and the nodes keep serving (two node processes)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.coord.schema import PROTOCOLS
from broker_agents.core.errors import BrokerError
from broker_agents.transport import request as nats_request
from node.cluster import LocalCluster
from tests.integration.coord.helpers import COORDINATOR, VOTER, S, spec

VALID: dict[str, dict[str, Any]] = {
    "vote": {"proposal": "p", "participants": ["v0"]},
    "hierarchical": {"proposal": "p", "participants": ["v0"], "cluster_size": 2},
    "pbft": {"operation": "x", "participants": ["a", "b", "c", "d"]},
    "barrier": {"barrier_id": "b", "participants": ["a"], "participant": "a"},
    "lock": {"name": "l", "ttl_ms": 1000},
    "leader": {"role": "r", "action": "campaign", "ttl_ms": 1000},
    "ensemble": {"question": "q", "participants": ["v0"]},
    "auto": {"proposal": "p", "participants": ["v0"]},
}
REQUIRED: dict[str, list[str]] = {  # dropping any one of these makes the request invalid
    p: [k for k in body if k not in ("cluster_size", "action", "ttl_ms")]
    for p, body in VALID.items()
}
# One client sends every example as fast as it can: a quota that never throttles it.
FUZZ_QUOTA = {"inflight": 1000, "rate_per_s": 100_000, "burst": 100_000}
BAD_VALUES = st.sampled_from([[None], {"\x00": [None]}])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def broken_request(draw: st.DrawFn, protocol: str) -> Any:
    """A valid request with one field replaced by a value of an impossible type."""
    body = dict(VALID[protocol])
    body[draw(st.sampled_from(sorted(body)))] = draw(BAD_VALUES)
    return body


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    protocol = draw(st.sampled_from(PROTOCOLS))
    as_json = draw(st.booleans())
    kind = draw(st.sampled_from(["bytes", "value", "broken", "missing"]))
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=64))
        return protocol, data, as_json
    if kind == "value":
        payload = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    elif kind == "broken":
        payload = draw(broken_request(protocol))
    else:  # drop a required field
        payload = dict(VALID[protocol])
        payload.pop(draw(st.sampled_from(REQUIRED[protocol])))
    return protocol, codec.encode(payload, as_json=as_json), as_json


class ClusterThread:
    """A two-node cluster driven from an event loop in a thread (hypothesis is sync)."""

    def __init__(self, base: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = LocalCluster(base, nodes=2, agents=[
            [spec(COORDINATOR, "coord-1", quota=FUZZ_QUOTA), spec(VOTER, "v0", choice="yes")],
            [spec(COORDINATOR, "coord-2", quota=FUZZ_QUOTA)]],
            extra_env={"BA_NODE__LOG_LEVEL": "warning"})
        self.call(self.cluster.start())
        self.nc = self.call(self.cluster.client())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _ask(self, subject: str, data: bytes, headers: dict[str, str] | None) -> Any:
        reply = await nats_request(self.nc, subject, data, timeout=10, headers=headers,
                                   signed=True)
        return reply.data, codec.decode(reply.data, reply.headers)

    def ask(self, subject: str, data: bytes, *, json_header: bool = False) -> tuple[bytes, Any]:
        """JSON requests say so in ``content-type`` (sniffing only knows objects/arrays)."""
        headers = {"content-type": "application/json"} if json_header else None
        result: tuple[bytes, Any] = self.call(self._ask(subject, data, headers))
        return result

    def close(self) -> None:
        self.call(self.nc.close())
        self.cluster.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterThread]:
    c = ClusterThread(Path(tmp_path_factory.mktemp("coord-fuzz")))
    yield c
    c.close()


def _still_serving(hosted: ClusterThread) -> None:
    _, res = hosted.ask(S.coord("vote"), codec.encode(VALID["vote"]))
    assert res["decision"] == "yes"
    assert all(p.process is not None and p.process.poll() is None
               for p in hosted.cluster.procs)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=malformed())
def test_malformed_requests_get_structured_errors(hosted: ClusterThread,
                                                  case: tuple[str, bytes, bool]) -> None:
    protocol, data, as_json = case
    raw, reply = hosted.ask(S.coord(protocol), data, json_header=as_json)
    err = BrokerError.from_payload(reply)
    assert err is not None, f"{protocol}: {data!r} got {reply!r}"
    assert err.code in ("malformed", "validation_error"), err
    if err.code == "validation_error":
        assert err.details["fields"] and all(f["field"] for f in err.details["fields"])
    headers = {"content-type": "application/json"} if as_json else None
    assert raw.startswith(b"{") == codec.is_json(data, headers)  # same encoding out


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.from_regex(r"\A[a-z][a-z0-9_-]{0,12}\Z").filter(
    lambda n: n not in PROTOCOLS and n != "auction"))
def test_unknown_protocols_are_named(hosted: ClusterThread, name: str) -> None:
    _, reply = hosted.ask(S.coord(name), codec.encode({"proposal": "p"}, as_json=True))
    err = BrokerError.from_payload(reply)
    assert err is not None and err.code == "unknown_protocol"
    assert err.details["protocol"] == name


def test_nodes_keep_serving_after_the_fuzzing(hosted: ClusterThread) -> None:
    _still_serving(hosted)
