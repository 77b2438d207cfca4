"""A probe agent that reports its node's registry view, so a chaos run can compare every
node's view with the bucket.

``<p>.registry.list`` is served by one node of a queue group, so it cannot show a given
node's view; the probe answers on its own inbox (``<p>.agent.<probe id>``) with the view's
``agent_id -> revision`` map, which equals the bucket's exactly when the view converged.
Host one per node: ``probe_spec(node_id)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from broker_agents import codec
from broker_agents.agent import Agent, AgentSettings, handler
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request

PROBE_CLASS = "chaos.probe:ViewProbeAgent"


class ViewDigest(BaseModel):
    """Ask a probe for its node's registry view."""

    message_type: ClassVar[str] = "chaos.view_digest"


class ViewProbeAgent(Agent):
    capabilities: ClassVar[list[str]] = ["chaos-probe"]
    Settings = AgentSettings  # no kwargs of its own

    @handler(ViewDigest)
    async def digest(self, _: ViewDigest) -> dict[str, Any]:
        view = self.ctx.services["registry"].view
        return {"node_id": self.ctx.node_id, "revisions": dict(view.index.revisions),
                "applied": view.applied_revision}


def probe_id(node_id: str) -> str:
    return f"probe-{node_id}"


def probe_spec(node_id: str) -> dict[str, Any]:
    return {"class": PROBE_CLASS, "id": probe_id(node_id)}


async def fetch_view(nc: Any, node_id: str, timeout: float = 0.5,
                     subjects: Subjects | None = None) -> dict[str, int]:
    """The node's view as ``agent_id -> revision`` (raises on timeout or error reply)."""
    subjects = subjects or Subjects()
    reply = await nats_request(nc, subjects.agent(probe_id(node_id)),
                             codec.encode(envelope(ViewDigest())), timeout=timeout)
    payload = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return {str(k): int(v) for k, v in payload["revisions"].items()}
