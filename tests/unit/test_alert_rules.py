"""config/prometheus/alerts.yml: rules that parse, say what they mean, watch metrics that
exist, and are unit-tested: ``promtool check rules`` and ``promtool test rules`` on the
synthetic series of config/prometheus/tests/, where every alert both fires and stays
quiet at least once. Skipped (with the reason) only where promtool is absent: Debian's
``prometheus`` package ships it and scripts/bootstrap installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_docker import EXPORTER_METRICS, defined_metrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "prometheus" / "alerts.yml"
TESTS = sorted((REPO / "config" / "prometheus" / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")


@cache
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in rules():
        found.setdefault(rule["alert"], []).append(rule)
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert TESTS
    tested = promtool("test", "rules", *map(str, TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        data = yaml.safe_load(path.read_text())
        assert data["rule_files"] == ["../alerts.yml"], path.name
        for case in data["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alerts()) - firing == set(), "alerts never tested firing"
    assert set(alerts()) - quiet == set(), "alerts never tested quiet"
    assert firing | quiet <= set(alerts()), "tests of alerts that do not exist"


def test_the_issue_asks_for_these_alerts() -> None:
    """Issue 17's list, one alert (at least) each."""
    asked = {"BrokerAgentsNodeDown", "BrokerAgentsNodeNotReady", "RaftGroupNoLeader",
             "RaftLeaderChurn", "RaftCommitStalled", "RegistryViewStale",
             "NatsSlowConsumerDrops", "AgentRestartIntensityHigh", "UnauthorizedActs",
             "RaftMessagesRejected", "PbftMessagesRejected", "MoneyNotConserved",
             "EscrowHeldTooLong", "NatsClusterCasUnsafe", "NatsServerGone"}
    assert asked <= set(alerts())


def test_every_rule_has_a_severity_a_summary_and_a_description() -> None:
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert re.match(r"^[A-Z][A-Za-z]+$", name), name


def test_every_metric_a_rule_uses_exists() -> None:
    for rule in rules():
        expr = rule["expr"]
        ours = set(re.findall(r"\bba_\w+", expr))
        assert ours <= defined_metrics(), f"{rule['alert']}: {sorted(ours - defined_metrics())}"
        theirs = set(re.findall(r"\bgnatsd_\w+", expr))
        assert theirs <= EXPORTER_METRICS, f"{rule['alert']}: {sorted(theirs - EXPORTER_METRICS)}"
        jobs = set(re.findall(r'job="([^"]+)"', expr))
        assert jobs <= {"broker-agents", "nats"}, rule["alert"]


def test_a_rule_using_a_missing_metric_would_be_caught() -> None:
    """The check above is not vacuous: the code defines the gauges the rules rely on."""
    assert {"ba_node_ready", "ba_money_issued", "ba_agent_restart_limit",
            "ba_escrow_oldest_hold_age_seconds"} <= defined_metrics()
    assert "ba_no_such_metric" not in defined_metrics()


@needs_promtool
def test_prometheus_of_the_compose_stack_loads_the_rules(tmp_path: Path) -> None:
    """docker/prometheus.yml with alerts.yml where compose mounts it: promtool checks the
    config and the rules it loads together."""
    docker = REPO / "docker"
    config = yaml.safe_load((docker / "prometheus.yml").read_text())
    compose = yaml.safe_load((docker / "compose.yaml").read_text())
    mounts = {}  # container path -> source
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    assert (docker / mounts["/etc/prometheus/prometheus.yml"]).resolve() == \
        docker / "prometheus.yml"
    (rule_file,) = config["rule_files"]
    assert (docker / mounts[rule_file]).resolve() == RULES
    # Lay the files out as the container sees them, under tmp_path.
    etc = tmp_path / "etc" / "prometheus"
    etc.mkdir(parents=True)
    shutil.copy(docker / "prometheus.yml", etc / "prometheus.yml")
    shutil.copy(RULES, tmp_path / rule_file.lstrip("/"))
    local = {**config, "rule_files": [str(tmp_path / rule_file.lstrip("/"))]}
    (etc / "prometheus.yml").write_text(yaml.safe_dump(local))
    checked = promtool("check", "config", str(etc / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout + checked.stderr
