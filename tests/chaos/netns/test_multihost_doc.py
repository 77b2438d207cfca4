"""docs/multi-host.md runs as written, each machine a host in a network namespace.

The page's placeholder addresses (192.0.2.10 for T, .11-.13 for the servers A-C, .14 for
the node machine D) become the addresses of hosts made by ``HostNetwork`` (T is the
control host, the root namespace), and its paths (``/etc/broker-agents``,
``/var/lib/broker-agents``, ``/tmp/ba-ship``) folders of the test. Then, as a user would:

- ``<!-- run: T -->`` blocks run as bash scripts on T, in a copy of the checkout whose
  ``config/multihost/node.toml`` has the addresses replaced (what the page asks);
- ``<!-- run: copy -->`` ``scp -rp SRC root@ADDR:/etc/`` is the machine at ADDR seeing SRC
  at ``/etc/broker-agents``: its commands run under a bind mount private to them (``ip
  netns exec`` gives each command its own mount namespace), so a server or node finds only
  the files the page copies to it;
- the ``nft-*`` rulesets are loaded on the servers and the node machine;
- ``<!-- run: start -->`` lines start in the background on the machine their ``# on X``
  names, and ``<!-- run: check -->`` lines are retried there until they succeed.

What each check printed is then asserted: the node's agent is found, every bucket the node
created is R3 with leader-only reads, and the firewall keeps routes from the node machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from chaos.netns.hosts import HostNetwork
from tests.chaos.netns.conftest import requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

ROOT = Path(__file__).parents[3]
PAGE = ROOT / "docs" / "multi-host.md"
NODE_TOML = ROOT / "config" / "multihost" / "node.toml"
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"<!-- run: (\S+) -->\s*```\w*\n(.*?)```", re.S)
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
ON = re.compile(r"^(.*\S)\s+#\s*on\s+([A-Z])\s*$")
SCP = re.compile(r"^scp -rp (\S+) root@(\S+):/etc/$")
PLACEHOLDER = re.compile(r"\b192\.0\.2\.(\d+)\b")
MACHINES = {"A": 11, "B": 12, "C": 13, "D": 14}  # host name = machine letter
T_OCTET = 10
CHECK_DEADLINE = 30.0


@dataclass
class Page:
    """The page's text with placeholders replaced, and where each machine lives."""

    text: str
    net: HostNetwork
    tmp: Path

    @property
    def etc(self) -> Path:
        return self.tmp / "etc-broker-agents"

    def blocks(self, kind: str) -> list[str]:
        return [m.group(2) for m in BLOCK.finditer(self.text) if m.group(1) == kind]

    def on_lines(self, kind: str) -> list[tuple[str, str]]:
        """(machine, command) of every ``# on X`` line of the ``kind`` blocks."""
        out = []
        for block in self.blocks(kind):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    match = ON.match(line)
                    assert match, f"no '# on X' on: {line}"
                    out.append((match.group(2), match.group(1)))
        return out


def substitute(text: str, net: HostNetwork, tmp: Path) -> str:
    def address(m: re.Match[str]) -> str:
        octet = int(m.group(1))
        if octet == T_OCTET:
            return net.control
        name = next((n for n, o in MACHINES.items() if o == octet), None)
        assert name is not None, f"the page uses an unknown machine address {m.group(0)}"
        return net.address(name)

    text = PLACEHOLDER.sub(address, text)
    for path, mine in (("/etc/broker-agents", "etc-broker-agents"),
                       ("/var/lib/broker-agents", "var-lib-broker-agents"),
                       ("/tmp/ba-ship", "ship")):
        text = text.replace(path, str(tmp / mine))
    return text


class Machines:
    """Commands on the page's machines: T is the control host, A-D hosts in namespaces
    that see their copied folder (``mounts``) at the page's /etc/broker-agents."""

    def __init__(self, page: Page, env: dict[str, str]) -> None:
        self.page, self.env = page, env
        self.mounts: dict[str, Path] = {}
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logfiles: list[IO[bytes]] = []

    def argv(self, machine: str, command: str) -> list[str]:
        if machine == "T":
            return ["bash", "-c", command]
        mount = self.mounts.get(machine)
        prelude = (f"mount --bind {mount} {self.page.etc} && " if mount else "")
        return self.page.net[machine].argv(["bash", "-c", prelude + command])

    def run(self, machine: str, command: str, timeout: float = 60.0
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(machine, command), env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, machine: str, command: str) -> None:
        log = open(self.page.tmp / f"{machine}.log", "wb")  # noqa: SIM115 (closed in stop)
        self.logfiles.append(log)
        self.procs.append((machine, subprocess.Popen(
            self.argv(machine, f"exec {command}"), env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)))

    def logs(self) -> str:
        return "\n".join(f"--- {m}\n" + (self.page.tmp / f"{m}.log").read_text()[-3000:]
                         for m, _ in self.procs)

    def until_ok(self, machine: str, command: str) -> str:
        """Retry until it exits 0 (the cluster takes a few seconds to form)."""
        deadline = time.monotonic() + CHECK_DEADLINE
        while True:
            done = self.run(machine, command, timeout=20)
            if done.returncode == 0:
                return done.stdout
            dead = [m for m, proc in self.procs if proc.poll() is not None]
            if dead:
                pytest.fail(f"the page's process on {', '.join(dead)} exited\n" + self.logs())
            if time.monotonic() > deadline:
                pytest.fail(f"on {machine}: {command}\n{done.stdout}\n{done.stderr}\n"
                            + self.logs())
            time.sleep(0.5)  # sleep-ok: polling a command's outcome, each try is a fresh run

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for log in self.logfiles:
            log.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the page's checks use {', '.join(missing)}: apt-get install -y "
                    + " ".join(missing))
    with HostNetwork(list(MACHINES)) as net:
        yield Page(substitute(PAGE.read_text(), net, tmp_path), net, tmp_path)


def test_the_page_shows_the_node_config_it_ships() -> None:
    """The ``toml`` block on the page is what config/multihost/node.toml says."""
    shown = tomllib.loads(TOML_BLOCK.findall(PAGE.read_text())[0])
    shipped = tomllib.loads(NODE_TOML.read_text())
    for section, values in shown.items():
        if isinstance(values, list):
            assert values == shipped[section], section
            continue
        for key, value in values.items():
            assert shipped[section][key] == value, f"{section}.{key}"


def test_a_three_machine_cluster_as_the_page_says(page: Page) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BA_")}
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}:/usr/sbin", "COLUMNS": "200",
                "HOME": str(page.tmp), "XDG_CONFIG_HOME": str(page.tmp / "config")})
    machines = Machines(page, env)
    checkout = page.tmp / "checkout"  # the user's checkout, node.toml's addresses replaced
    (checkout / "config" / "multihost").mkdir(parents=True)
    (checkout / "config" / "multihost" / "node.toml").write_text(
        substitute(NODE_TOML.read_text(), page.net, page.tmp))

    for script in page.blocks("T"):  # keys, configs, the folders to copy
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=checkout,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"

    by_address = {page.net.address(m): m for m in MACHINES}
    for line in page.blocks("copy")[0].strip().splitlines():
        match = SCP.match(line)
        assert match, f"not a copy the test understands: {line}"
        src, address = Path(match.group(1)), match.group(2)
        assert src.is_dir(), line  # the machine's /etc/broker-agents, staged on T
        machines.mounts[by_address[address]] = src
    assert set(machines.mounts) == set(MACHINES)
    shipped = [p.name for p in (page.tmp / "ship").rglob("*") if p.is_file()]
    assert not [n for n in shipped if n.endswith(".nk") or n in ("ca-key.pem",
                                                                  "route-password")]

    for kind, hosts in (("nft-servers", "ABC"), ("nft-node", "D")):
        ruleset = page.tmp / f"{kind}.nft"
        ruleset.write_text(page.blocks(kind)[0])
        for host in hosts:
            page.net[host].run(["nft", "-f", str(ruleset)])

    try:
        for machine, command in page.on_lines("start"):
            machines.start(machine, command)
        outputs = [machines.until_ok(m, c) for m, c in page.on_lines("check")]
        assert json.loads(outputs[0]) == {"status": "ok"}  # the server's JetStream health
        assert json.loads(outputs[1])["ready"] is True, outputs[1]
        assert "echo-d" in outputs[2] and "node-d" in outputs[2], outputs[2]
        buckets = [line.split() for line in outputs[3].splitlines() if line.startswith("KV_")]
        assert "KV_ba_agents" in [b[0] for b in buckets], outputs[3]
        assert all(b[1:3] == ["replicas=3", "direct=false"] for b in buckets), outputs[3]
        assert {b[3] for b in buckets} <= {"leader=ba-1", "leader=ba-2", "leader=ba-3"}
        # the firewall: routes are closed to the node machine, clients are not
        probe = ("python3 -c 'import socket,sys; socket.create_connection"
                 "((sys.argv[1], int(sys.argv[2])), 1).close()' {} {}")
        server = page.net.address("A")
        assert machines.run("D", probe.format(server, 4222)).returncode == 0
        assert machines.run("D", probe.format(server, 6222)).returncode != 0
        for _, proc in machines.procs:
            assert proc.poll() is None, machines.logs()
    finally:
        machines.stop()
