"""Alerts the dashboard evaluates from what it sees, and Prometheus' firing ones.

Its own: a node down or not ready, a consensus group without a leader, money not
conserved. With ``prometheus_url`` the collector also copies ``/api/v1/alerts``' firing
alerts into the model (``prom_alerts``). ``since`` is when the dashboard first saw the
condition (Prometheus' ``activeAt`` for its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.dashboard.model import ClusterModel


def evaluate(model: ClusterModel, cluster: dict[str, Any], groups: dict[str, Any],
             money: dict[str, Any], now: float) -> list[dict[str, Any]]:
    firing: dict[str, tuple[str, str]] = {}
    for node in cluster["nodes"]:
        if node["state"] == "down":
            firing[f"NodeDown:{node['id']}"] = ("critical", f"node {node['id']} is down")
        elif node["state"] == "up" and node["ready"] is False:
            why = "; ".join(f"{k}: {v}" for k, v in node["problems"].items()) or "not ready"
            firing[f"NodeNotReady:{node['id']}"] = ("warning",
                                                    f"node {node['id']} is not ready ({why})")
    for group in groups["groups"]:
        if group["leader"] is None:
            firing[f"RaftNoLeader:{group['group']}"] = (
                "critical", f"consensus group {group['group']} has no leader")
    if money.get("conserved") is False:
        firing["MoneyNotConserved"] = (
            "critical", f"total balance {money['total_balance']} != issued {money['issued']}")
    for name in [n for n in model.alert_since if n not in firing]:
        del model.alert_since[name]
    out = []
    for key, (severity, summary) in sorted(firing.items()):
        since = model.alert_since.setdefault(key, now)
        out.append({"name": key.split(":", 1)[0], "severity": severity, "summary": summary,
                    "since": since, "source": "dashboard"})
    return out + list(model.prom_alerts)


def from_prometheus(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Firing alerts of a Prometheus ``/api/v1/alerts`` answer, in the API's shape."""
    from datetime import datetime

    out = []
    for alert in (payload.get("data") or {}).get("alerts") or []:
        if alert.get("state") != "firing":
            continue
        labels, notes = alert.get("labels") or {}, alert.get("annotations") or {}
        since = None
        if alert.get("activeAt"):
            try:
                since = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")
                                               ).timestamp()
            except ValueError:
                since = None
        severity = labels.get("severity")
        out.append({"name": labels.get("alertname"), "severity": severity
                    if severity in ("critical", "warning") else "warning",
                    "summary": notes.get("summary") or labels.get("alertname"),
                    "since": since, "source": "prometheus"})
    return out
