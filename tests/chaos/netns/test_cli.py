"""The CLI contract of ``chaos run --network``, as a user runs it: a subprocess.

Refused where namespaces are not permitted (one line, exit 2), an unknown network exits 2,
loopback is not gated by the netns check, and a netns run's JSON report names the network,
its hosts (addresses, roles), the faults with their start and heal times, and per-scenario
verdicts and recovery times. (A full loopback run through the CLI is
tests/chaos/test_scenarios.py's.)
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.netns.conftest import requires_netns

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PATH": os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"}
# no privilege over the machine's namespaces: a non-root uid, and a root that is root only
# in its own user namespace (so the refusal does not rest on the uid check alone)
UNPRIVILEGED = {"uid-nobody": ["unshare", "--user"],
                "userns-root": ["unshare", "--user", "--map-root-user"]}
WHY = {"uid-nobody": "network namespaces need root",
       "userns-root": "`ip netns add` is refused here"}


def cli(*args: str, wrapper: tuple[str, ...] = (), timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrapper, sys.executable, "-m", "node.cli", "chaos", *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def usable(wrapper: tuple[str, ...]) -> bool:
    return subprocess.run([*wrapper, "true"], capture_output=True).returncode == 0


@functools.cache
def refused(kind: str, report: Path) -> subprocess.CompletedProcess[str]:
    wrapper = tuple(UNPRIVILEGED[kind])
    if not usable(wrapper):
        pytest.skip(f"`{' '.join(wrapper)}` is not permitted here")
    probe = subprocess.run([*wrapper, "ip", "netns", "add", f"h15-probe-{os.getpid()}"],
                           env=ENV, capture_output=True, text=True)
    if probe.returncode == 0:  # not refused after all: undo, and say the setup is wrong
        subprocess.run(["ip", "netns", "del", f"h15-probe-{os.getpid()}"], env=ENV)
    assert probe.returncode != 0, f"{kind} may add namespaces: the test proves nothing"
    return cli("run", "--network", "netns", "--scenario", "kv-register", "--duration", "3",
               "--report", str(report), wrapper=wrapper)


@pytest.fixture(scope="module")
def no_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refused") / "report.json"


@pytest.mark.parametrize("kind", list(UNPRIVILEGED))
def test_netns_is_refused_where_namespaces_are_not_permitted(kind: str, no_report: Path
                                                             ) -> None:
    done = refused(kind, no_report)
    assert done.returncode == 2, done
    said = " ".join(done.stderr.split())
    assert said.startswith(f"--network netns is not possible here: {WHY[kind]}"), said
    assert not no_report.exists()  # refused before anything ran


@pytest.mark.parametrize("kind", list(UNPRIVILEGED))
def test_the_refusal_is_one_line(kind: str, no_report: Path) -> None:
    done = refused(kind, no_report)
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unknown_network_exits_2(tmp_path: Path) -> None:
    done = cli("run", "--network", "wan", "--scenario", "kv-register", "--duration", "1",
               "--report", str(tmp_path / "r.json"))
    assert done.returncode == 2, done
    assert "unknown network" in done.stderr and "'wan'" in done.stderr
    assert not (tmp_path / "r.json").exists()


def test_loopback_is_not_gated_by_the_netns_check(tmp_path: Path) -> None:
    """Unprivileged, loopback goes on to load the scenarios (an unknown one: exit 2 for
    that, naming the known ones)."""
    wrapper = tuple(UNPRIVILEGED["uid-nobody"])
    if not usable(wrapper):
        pytest.skip("`unshare --user` is not permitted here")
    done = cli("run", "--network", "loopback", "--scenario", "no-such-scenario",
               "--report", str(tmp_path / "r.json"), wrapper=wrapper)
    assert done.returncode == 2, done
    assert "unknown scenario" in done.stderr and "netns" not in done.stderr
    assert all(name in done.stderr for name in ("kv-register", "consensus", "auction"))


@requires_netns
def test_a_netns_run_reports_network_hosts_faults_verdicts_and_recovery(tmp_path: Path
                                                                        ) -> None:
    report = tmp_path / "report.json"
    done = cli("run", "--network", "netns", "--scenario", "kv-register", "--duration", "3",
               "--seed", "7", "--report", str(report), "--workdir", str(tmp_path / "work"))
    data = json.loads(report.read_text())
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert data["network"] == "netns" and data["seed"] == 7 and data["failed"] is False

    hosts = {h["host"]: h for h in data["hosts"]}
    assert {h: hosts[h]["role"] for h in ("nats-1", "nats-2", "nats-3", "control")} == {
        "nats-1": "nats-server", "nats-2": "nats-server", "nats-3": "nats-server",
        "control": "harness"}
    addresses = [ipaddress.ip_address(h["address"]) for h in data["hosts"]]
    assert len(set(addresses)) == len(addresses)
    subnet = ipaddress.ip_network(f"{hosts['control']['address']}/24", strict=False)
    assert all(a in subnet and not a.is_loopback for a in addresses)
    gone = subprocess.run(["ip", "netns", "list"], env=ENV, capture_output=True, text=True)
    assert not any(h["namespace"] in gone.stdout for h in data["hosts"] if "namespace" in h)

    (scenario,) = data["scenarios"]
    assert scenario["scenario"] == "kv-register" and scenario["network"] == "netns"
    assert scenario["verdict"] == "ok" and scenario["violations"] == []
    assert {c["checker"] for c in scenario["checks"]} >= {"linearizable-register",
                                                         "no-lost-writes"}
    assert all(c["verdict"] == "ok" for c in scenario["checks"])
    assert scenario["recovery"] and all(
        isinstance(v, float) and v >= 0 for v in scenario["recovery"].values())
    assert scenario["ops"]["ok"] > 0
    assert scenario["replay"].startswith("broker-agents chaos run --network netns")

    faults = scenario["faults"]
    injected = {f["fault_id"]: f for f in faults if f["action"] == "inject"}
    healed = {f["fault_id"]: f for f in faults if f["action"] == "heal"}
    assert injected and injected.keys() == healed.keys()  # every fault healed by the end
    for fault_id, start in injected.items():
        assert start["error"] is None and healed[fault_id]["error"] is None
        assert start["kind"] and start["target"]
        assert 0 <= start["offset"] < healed[fault_id]["offset"]
        assert start["at"] < healed[fault_id]["at"]
