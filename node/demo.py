"""``broker-agents demo``: a 3-node local cluster, sample agents, real traffic, a table.

Secured like any default deployment: the traffic is a ``client``'s (public requests
only, signed), the registry view and the balances an ``observer``'s (it reads buckets),
and the deposits that fund the bidders an ``admin``'s (signed treasury requests).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.treasury import treasury_request
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.registry.client import Registry
from broker_agents.samples import Calculate, Echo, Relay
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster

BIDDER = "broker_agents.auction.bidder:BidderAgent"
VOTER = "broker_agents.coord.voter:VoterAgent"
DEMO_AGENTS: list[list[dict[str, Any]]] = [
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-a"},
     {"class": "broker_agents.samples:RelayAgent", "id": "relay"},
     {"class": "broker_agents.auction.auctioneer:AuctioneerAgent", "id": "auctioneer"},
     {"class": "broker_agents.auction.treasury:TreasuryAgent", "id": "treasury"}],
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-b"},
     {"class": "broker_agents.samples:CalculatorAgent", "id": "calc"},
     {"class": BIDDER, "id": "bidder-1", "kwargs": {"value": 10.0}},
     {"class": BIDDER, "id": "bidder-2", "kwargs": {"value": 15.0}},
     {"class": "broker_agents.coord.coordinator:CoordinatorAgent", "id": "coordinator"},
     {"class": VOTER, "id": "voter-1", "kwargs": {"choice": "ship"}}],
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-c"},
     {"class": BIDDER, "id": "bidder-3", "kwargs": {"value": 12.0}},
     {"class": VOTER, "id": "voter-2", "kwargs": {"choice": "ship"}},
     {"class": VOTER, "id": "voter-3", "kwargs": {"choice": "wait"}}],
]

DEMO_IDS = [agent["id"] for node in DEMO_AGENTS for agent in node]


@dataclass
class Step:
    what: str
    subject: str
    outcome: str
    ok: bool


async def _ask(nc: NATS, subject: str, payload: Any, raw: bytes | None = None) -> Any:
    reply = await nats_request(nc, subject, raw if raw is not None else codec.encode(payload),
                               timeout=5, signed=True)
    return codec.decode(reply.data, reply.headers)


@dataclass
class Roles:
    """One connection per role the demo acts as."""

    client: NATS
    observer: NATS
    admin: NATS  # the treasury's deposits

    async def close(self) -> None:
        for nc in (self.client, self.observer, self.admin):
            await nc.close()


async def exercise(roles: Roles, subjects: Subjects) -> list[Step]:
    """Talk to the agents the way any client would: over NATS subjects."""
    nc = roles.client
    steps: list[Step] = []
    for agent in ("echo-a", "echo-b", "echo-c"):
        got = await _ask(nc, subjects.agent(agent), envelope(Echo(text=f"hi {agent}")))
        steps.append(Step(f"request/reply to {agent}", subjects.agent(agent),
                          f"answered by {got['agent_id']} on {got['node_id']}",
                          got.get("agent_id") == agent))
    answered: Counter[str] = Counter()
    for i in range(30):
        got = await _ask(nc, subjects.cap("echo"), envelope(Echo(text=str(i))))
        answered[got["agent_id"]] += 1
    spread = ", ".join(f"{a}={n}" for a, n in sorted(answered.items()))
    steps.append(Step("30 requests to capability 'echo'", subjects.cap("echo"),
                      f"load-balanced: {spread}", len(answered) >= 2))
    got = await _ask(nc, subjects.agent("relay"), envelope(Relay(target="echo-c", text="hop")))
    steps.append(Step("agent-to-agent across nodes", subjects.agent("relay"),
                      f"{got['via']}@{got['via_node']} -> {got['reply']['agent_id']}"
                      f"@{got['reply']['node_id']}", got["reply"]["agent_id"] == "echo-c"))
    got = await _ask(nc, subjects.cap("math"), envelope(Calculate(op="mul", a=6, b=7)))
    steps.append(Step("capability 'math': 6 x 7", subjects.cap("math"),
                      f"{got['value']:g} from {got['agent_id']}", got["value"] == 42))
    got = await _ask(nc, subjects.agent("calc"), None,
                     raw=b'{"type":"calculate","data":{"op":"div","a":1,"b":0}}')
    err = BrokerError.from_payload(got)
    steps.append(Step("JSON request dividing by zero", subjects.agent("calc"),
                      f"error {err.code}: {err.message}" if err else str(got),
                      err is not None and err.code == "handler_error"))
    got = await _ask(nc, subjects.agent("echo-a"), None, raw=b"\xc1 not msgpack")
    err = BrokerError.from_payload(got)
    steps.append(Step("garbage bytes to an inbox", subjects.agent("echo-a"),
                      f"error {err.code}" if err else str(got),
                      err is not None and err.code == "malformed"))
    got = await _ask(nc, subjects.agent("echo-a"), envelope(Echo(text="still here")))
    steps.append(Step("agent still serving after garbage", subjects.agent("echo-a"),
                      got.get("text", "?"), got.get("text") == "still here"))
    registry = await Registry.connect(roles.observer, subjects)
    try:
        await registry.view.wait_for(lambda: registry.count() == len(DEMO_IDS), timeout=10)
        found = registry.find_by_capability("echo")
        steps.append(Step("registry: find capability 'echo'", "local view of ba_agents",
                          ", ".join(f"{r.agent_id}@{r.node_id}" for r in found),
                          len(found) == 3))
    finally:
        await registry.close()
    got = await _ask(nc, subjects.registry("query"), {"criteria": [
        {"field": "capabilities", "op": "eq", "value": "math"},
        {"field": "health", "op": "eq", "value": "healthy"}]})
    names = [a["agent_id"] for a in got.get("agents", [])]
    steps.append(Step("registry query over NATS", subjects.registry("query"),
                      f"math & healthy -> {names}", names == ["calc"]))
    steps.append(await _auction(roles, subjects))
    got = await _ask(nc, subjects.coord("vote"), {
        "rule": "majority", "capability": "voter", "proposal": "release v1?",
        "options": ["ship", "wait"], "timeout_ms": 2000})
    tally = ", ".join(f"{k}={v:g}" for k, v in sorted(got.get("tally", {}).items()))
    steps.append(Step("majority vote among 'voter' agents", subjects.coord("vote"),
                      f"{got.get('decision')} ({tally}), confidence "
                      f"{got.get('confidence', 0):.2f}", got.get("decision") == "ship"))
    return steps


async def _auction(roles: Roles, subjects: Subjects) -> Step:
    """Three bidder agents on two nodes, found by capability, settled against budgets."""
    for bidder in ("bidder-1", "bidder-2", "bidder-3"):
        await treasury_request(roles.admin, "deposit", {
            "op_id": f"demo-fund-{bidder}", "owner": bidder, "amount": 100.0},
            subjects=subjects)
    ledger = Ledger(await roles.observer.jetstream().key_value(subjects.bucket("accounts")))
    result = await run_auction(roles.client, {"type": "vickrey", "item": "gpu-hour",
                                    "capability": "bidder", "reserve": 5.0,
                                    "duration_ms": 300}, subjects=subjects)
    winner = await ledger.account("bidder-2")
    outcome = (f"{result['winner']} wins at {result['price']:g} (bids 10/15/12), "
               f"{result['num_bids']} bids, {result['status']}; bidder-2 balance "
               f"{winner.balance if winner else '?'}")
    ok = (result["winner"] == "bidder-2" and result["price"] == 12.0
          and winner is not None and winner.balance == 88.0)
    return Step("Vickrey auction, bidders by capability", subjects.coord("auction"), outcome, ok)


async def run_demo(base_dir: Path | None = None, *, insecure: bool = False
                   ) -> tuple[list[Step], dict[str, int | None]]:
    with tempfile.TemporaryDirectory(prefix="ba-demo-") as tmp:
        cluster = LocalCluster(base_dir or Path(tmp), nodes=3, agents=DEMO_AGENTS,
                               insecure=insecure)
        await cluster.start()
        try:
            roles = Roles(await cluster.client(Role.CLIENT), await cluster.client(Role.OBSERVER),
                          await cluster.client(Role.ADMIN))
            try:
                steps = await exercise(roles, Subjects(cluster.prefix))
            finally:
                await roles.close()
        finally:
            codes = await asyncio.to_thread(cluster.stop)
    return steps, codes
