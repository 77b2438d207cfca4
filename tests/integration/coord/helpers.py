"""Shared helpers for coordination integration tests: agent specs and request helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster

S = Subjects()
COORDINATOR = "broker_agents.coord.coordinator:CoordinatorAgent"
VOTER = "broker_agents.coord.voter:VoterAgent"
PREDICTOR = "broker_agents.coord.voter:PredictorAgent"
REPLICA = "broker_agents.coord.pbft_replica:PbftReplicaAgent"
CANDIDATE = "broker_agents.coord.candidates:RoleCandidateAgent"
LOCK_HOLDER = "broker_agents.coord.candidates:LockHolderAgent"


@asynccontextmanager
async def running_cluster(base: Path, nodes: int,
                          agents: list[list[dict[str, Any]]]) -> AsyncIterator[LocalCluster]:
    """Node processes hosting ``agents`` (quiet logs), stopped afterwards."""
    cluster = LocalCluster(base, nodes=nodes, agents=agents,
                           extra_env={"BA_NODE__LOG_LEVEL": "warning"})
    await cluster.start()
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


@asynccontextmanager
async def client_of(cluster: LocalCluster, role: Role = Role.CLIENT) -> AsyncIterator[NATS]:
    conn = await cluster.client(role)
    try:
        yield conn
    finally:
        await conn.close()


def spec(cls: str, agent_id: str, caps: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"class": cls, "id": agent_id, "kwargs": kwargs}
    if caps:
        out["capabilities"] = caps
    return out


async def coord(nc: NATS, protocol: str, request: Any, *, as_json: bool = False,
                timeout: float = 15, acting_for: str | None = None) -> Any:
    """Send one coordination request, signed as the connection's user (or as
    ``acting_for``, for an admin's connection); returns the decoded reply."""
    reply = await nats_request(nc, S.coord(protocol), codec.encode(request, as_json=as_json),
                               timeout=timeout, signed=True, acting_for=acting_for)
    return codec.decode(reply.data, reply.headers)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


async def agent_call(nc: NATS, agent_id: str, msg: Any, timeout: float = 5) -> Any:
    reply = await nats_request(nc, S.agent(agent_id), codec.encode(envelope(msg)), timeout=timeout)
    payload = codec.decode(reply.data)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return payload
