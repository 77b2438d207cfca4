"""The API documents (``/work/briefs/dashboard_api.md``), built from a ``ClusterModel``.

One function per kind; each returns exactly the JSON its GET answers and its SSE event
carries. Sealed bids (first-price, Vickrey, combinatorial) are never in a document before
the auction closed. Money conservation is the auditor's (``core.auction.audit``).
"""

from __future__ import annotations

import math
from typing import Any

from broker_agents.core.auction.audit import audit
from broker_agents.core.budget import Account
from node.dashboard.alerts import evaluate
from node.dashboard.model import ClusterModel

SEALED = frozenset({"first_price", "vickrey", "combinatorial"})
KINDS = ("cluster", "agents", "groups", "auctions", "accounts", "coordination", "variables")


def _status_agents(model: ClusterModel) -> dict[str, tuple[str, dict[str, Any]]]:
    """agent id -> (node, its metrics from that node's last status)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for seen in model.nodes.values():
        for agent, m in ((seen.status or {}).get("agents") or {}).items():
            out[agent] = (seen.node_id, m)
    return out


def cluster(model: ClusterModel, now: float) -> dict[str, Any]:
    nodes = []
    for node_id in sorted(model.nodes):
        seen = model.nodes[node_id]
        st = seen.status or {}
        hosted = sorted(st.get("agents") or
                        [a for a, r in model.agents.items() if r.get("node_id") == node_id])
        started = st.get("started_at") or (seen.record or {}).get("started_at") or None
        nodes.append({
            "id": node_id, "state": model.node_state(seen, now),
            "healthy": st.get("healthy"), "ready": st.get("ready"),
            "version": st.get("version"), "started_at": started,
            "uptime_s": round(now - started, 3) if started else None,
            "last_seen": max(seen.status_at,
                             float((seen.record or {}).get("last_heartbeat") or 0.0)),
            "agents": hosted, "problems": dict(st.get("problems") or {})})
    nats: dict[str, dict[str, Any]] = dict(model.nats)
    for seen in model.nodes.values():
        st = seen.status or {}
        url = st.get("nats_url")
        if url and url not in nats:
            nats[url] = {"url": url, "connected": bool(st.get("nats_connected"))
                         and model.node_state(seen, now) == "up",
                         "version": st.get("nats_version")}
    groups = {g for seen in model.nodes.values()
              for g in ((seen.status or {}).get("groups") or {})}
    up = sum(1 for n in nodes if n["state"] == "up")
    doc = {"generated_at": now, "nodes": nodes, "nats": sorted(nats.values(),
                                                               key=lambda n: n["url"]),
           "alerts": [], "totals": {
               "nodes_up": up, "nodes_down": sum(1 for n in nodes if n["state"] == "down"),
               "agents": len(model.agents), "groups": len(groups),
               "auctions_open": sum(1 for a in model.auctions.values()
                                    if a.get("stage") == "open")}}
    doc["alerts"] = evaluate(model, doc, groups_doc(model, now), accounts(model, now), now)
    return doc


def _p50(le: list[Any], counts: list[float]) -> float | None:
    if not counts or not counts[-1]:
        return None
    half = counts[-1] / 2
    for bound, count in zip(le, counts, strict=False):
        if count >= half:
            return None if bound is None else round(bound * 1000, 3)
    return None


def agent_row(model: ClusterModel, agent_id: str,
              metrics: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    record = model.agents.get(agent_id)
    node, m = metrics.get(agent_id, (None, None))
    if record is None and m is None:
        return None
    r = record or {}
    return {"id": agent_id, "node": r.get("node_id", node), "class": (r.get("metadata") or {})
            .get("class", r.get("name")), "capabilities": list(r.get("capabilities") or []),
            "health": r.get("health"), "state": r.get("state"),
            "registered_at": r.get("registered_at"), "last_heartbeat": r.get("last_heartbeat"),
            "messages_in": m.get("in") if m else None, "messages_out": m.get("out") if m else None,
            "errors": m.get("errors") if m else None, "restarts": m.get("restarts") if m else None,
            "latency_ms_p50": _p50(m.get("le") or [], m.get("counts") or []) if m else None}


def agents(model: ClusterModel, now: float, capability: str | None = None,
           health: str | None = None, node: str | None = None) -> dict[str, Any]:
    metrics = _status_agents(model)
    rows = []
    for agent_id in sorted(set(model.agents) | set(metrics)):
        row = agent_row(model, agent_id, metrics)
        if row is None:
            continue
        if capability and capability not in row["capabilities"]:
            continue
        if (health and row["health"] != health) or (node and row["node"] != node):
            continue
        rows.append(row)
    return {"agents": rows}


def agent(model: ClusterModel, agent_id: str) -> dict[str, Any] | None:
    metrics = _status_agents(model)
    row = agent_row(model, agent_id, metrics)
    if row is None:
        return None
    m = metrics.get(agent_id, ("", {}))[1]
    points = list(model.series.get(agent_id, ()))
    return {"agent": row,
            "latency_histogram": {"le": list(m.get("le") or []),
                                  "counts": list(m.get("counts") or [])},
            "series": {"messages_in": [[t, v] for t, v, _, _ in points],
                       "messages_out": [[t, v] for t, _, v, _ in points],
                       "errors": [[t, v] for t, _, _, v in points]}}


def groups_doc(model: ClusterModel, now: float) -> dict[str, Any]:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for seen in model.nodes.values():
        up = model.node_state(seen, now) == "up"
        for group, g in ((seen.status or {}).get("groups") or {}).items():
            by_group.setdefault(group, []).append({
                "id": seen.node_id, "role": g.get("role") if up else "unknown",
                "term": g.get("term"), "commit_index": g.get("commit_index"),
                "applied_index": g.get("applied_index"), "up": up,
                "_leader": g.get("leader") if up else None})
    out = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda m: m["id"])
        live = [m for m in members if m["up"]]
        leaders = [m for m in live if m["role"] == "leader"]
        top = max(leaders, key=lambda m: m["term"] or 0) if leaders else None
        best = max(live, key=lambda m: m["commit_index"] or 0) if live else None
        for m in members:
            m.pop("_leader")
        out.append({"group": group, "leader": top["id"] if top else None,
                    "term": max((m["term"] or 0 for m in live), default=None),
                    "commit_index": best["commit_index"] if best else None,
                    "applied_index": best["applied_index"] if best else None,
                    "members": members,
                    "elections": list(model.elections.get(group, ()))})
    return {"groups": out}


def _closed(record: dict[str, Any]) -> bool:
    state = record.get("state") or {}
    return record.get("stage") != "open" or state.get("outcome") is not None \
        or state.get("phase") not in (None, "open")


def auction_row(record: dict[str, Any]) -> dict[str, Any]:
    request = record.get("request") or {}
    state = record.get("state") or {}
    outcome = state.get("outcome") or {}
    kind = str(request.get("type") or (state.get("config") or {}).get("mechanism"))
    sealed = kind in SEALED
    closed = _closed(record)
    bids = [] if sealed and not closed else [
        {"bidder": b.get("bidder"), "amount": b.get("amount"),
         "at": b["tick"] / 1000 if isinstance(b.get("tick"), int | float) else None}
        for b in state.get("bids") or ()]
    finished = record.get("finished_ms")
    stage = record.get("stage")
    return {"id": record.get("auction_id"), "kind": kind, "item": request.get("item"),
            "seller": request.get("seller") or (state.get("config") or {}).get("seller"),
            "state": stage, "opened_at": (state.get("opened_at") or record.get(
                "started_ms") or 0) / 1000 or None,
            "closed_at": finished / 1000 if finished else (
                outcome["closed_at"] / 1000 if outcome.get("closed_at") else None),
            "rounds": outcome.get("rounds", state.get("round")), "sealed": sealed,
            "bids": bids, "winner": outcome.get("winner"),
            "price": outcome.get("price") if outcome else None,
            "settlement": None if stage == "open" else stage,
            "failure": record.get("failure")}


def auctions(model: ClusterModel, now: float, state: str | None = None) -> dict[str, Any]:
    rows = [auction_row(r) for r in model.auctions.values()]
    if state:
        rows = [r for r in rows if r["state"] == state]
    rows.sort(key=lambda r: r["opened_at"] or 0, reverse=True)
    return {"auctions": rows}


def accounts(model: ClusterModel, now: float) -> dict[str, Any]:
    parsed: list[Account] = []
    for raw in model.accounts.values():
        try:
            parsed.append(Account.model_validate(raw))
        except ValueError:
            continue  # a corrupt record: the auditor's CLI names it; not money we can show
    totals = audit(parsed, {}, int(now * 1000), 0).totals if parsed else None
    issued = (totals.deposited - totals.withdrawn) if totals else None
    conserved = None
    if totals is not None and issued is not None:
        conserved = math.isclose(totals.balance, issued, rel_tol=1e-9, abs_tol=1e-6)
    return {"accounts": [{"id": a.owner, "balance": a.balance, "held": a.reserved}
                         for a in sorted(parsed, key=lambda a: a.owner)],
            "total_balance": totals.balance if totals else 0.0,
            "total_held": totals.held if totals else 0.0,
            "issued": issued, "conserved": conserved,
            "transfers": list(model.transfers)[::-1]}


def coordination(model: ClusterModel, now: float) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"votes": [], "pbft": [], "hierarchical": []}
    for run in reversed(model.coordination):
        protocol = str(run.get("protocol"))
        bucket = ("votes" if protocol in ("vote", "voting") else protocol
                  if protocol in out else None)
        if bucket is None:
            continue
        out[bucket].append({
            "id": run.get("coord_id"), "protocol": protocol, "proposal": run.get("proposal"),
            "at": run.get("_at"), "outcome": run.get("outcome"),
            "duration_ms": run.get("duration_ms"), "answers": list(run.get("answers") or []),
            "coordinator": run.get("coordinator"), "node": run.get("node_id")})
    return out


def variables(model: ClusterModel, now: float) -> dict[str, Any]:
    spaces = []
    for space in sorted(set(model.spaces) | set(model.trials)):
        held = model.spaces.get(space) or {"values": {}, "frozen": [], "history": {}}
        spaces.append({"space": space, "version": held.get("version"), "variables": [
            {"name": name, "value": value, "frozen": name in held["frozen"],
             "history": [[t, v] for t, v in held["history"].get(name, ())]}
            for name, value in sorted(held["values"].items())],
            "trials": list(model.trials.get(space, ()))})
    return {"spaces": spaces}


def document(kind: str, model: ClusterModel, now: float) -> dict[str, Any]:
    builders = {"cluster": cluster, "agents": agents, "groups": groups_doc,
                "auctions": auctions, "accounts": accounts, "coordination": coordination,
                "variables": variables}
    return builders[kind](model, now)
