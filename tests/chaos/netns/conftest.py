"""Shared by the netns tests: the skip marker, and agents that probe the network from inside.

``requires_netns`` skips where namespaces (or nft) cannot be used, with
``unavailable_reason()``'s words (asked once per session: each ask adds a probe namespace).

``HostAgents`` runs one small Python process per host (and one on the control host) that
serves a TCP echo and binds a UDP port on the host's address, and answers commands on
stdin: ``reachability()`` is the directed matrix of who delivers UDP datagrams to whom
(datagrams need no return path, so a one-way drop shows as one direction), and
``ask(host, "connect <addr> <timeout>")`` etc. drive TCP from inside a host.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from chaos.netns.hosts import HostNetwork, unavailable_reason

# the netns tools live in /usr/sbin, which a non-login root shell may not have on PATH
if "/usr/sbin" not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"

NETNS_UNAVAILABLE = unavailable_reason()
requires_netns = pytest.mark.skipif(NETNS_UNAVAILABLE is not None,
                                    reason=NETNS_UNAVAILABLE or "")

CONTROL = "control"  # the control host's name in HostAgents (the root namespace)

AGENT = r'''
import json, socket, sys, threading, time
addr, port = sys.argv[1], int(sys.argv[2])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((addr, port))
srv = socket.create_server((addr, port))
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
def serve():
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
held = None
def reply(x):
    print(json.dumps(x), flush=True)
reply("ready")
for line in sys.stdin:
    cmd, *args = line.split()
    try:
        if cmd == "send":  # send TAG ADDR...: three datagrams to each (a drop gives EPERM)
            for peer in args[1:]:
                for _ in range(3):
                    try:
                        udp.sendto(args[0].encode(), (peer, port))
                    except OSError:
                        pass
            reply("sent")
        elif cmd == "collect":  # collect TAG WINDOW: who delivered TAG (all sent already)
            got, deadline = set(), time.monotonic() + float(args[1])
            while (left := deadline - time.monotonic()) > 0:
                udp.settimeout(left)
                try:
                    data, (src, _) = udp.recvfrom(64)
                except TimeoutError:
                    break
                if data.decode() == args[0]:
                    got.add(src)
            reply(sorted(got))
        elif cmd == "connect":  # connect ADDR TIMEOUT: a fresh TCP connection
            socket.create_connection((args[0], port), timeout=float(args[1])).close()
            reply("ok")
        elif cmd == "open":  # open ADDR TIMEOUT: a connection kept for send/recv
            held = socket.create_connection((args[0], port), timeout=float(args[1]))
            reply("ok")
        elif cmd == "send-tcp":
            held.sendall(args[0].encode())
            reply("ok")
        elif cmd == "recv":  # recv TIMEOUT: what the echo sent back, or the error
            held.settimeout(float(args[0]))
            reply(held.recv(64).decode())
        else:
            reply(f"unknown command {cmd}")
    except OSError as e:
        reply(type(e).__name__)
'''


class HostAgents:
    """One agent per host of ``network`` plus the control host, all on ``port``."""

    def __init__(self, network: HostNetwork, port: int | None = None) -> None:
        self.network = network
        self.port = port or 20000 + os.getpid() % 20000
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.replies: dict[str, queue.Queue[str]] = {}
        self.addresses = {CONTROL: network.control,
                          **{h.name: h.address for h in network.hosts.values()}}
        self.names = {a: n for n, a in self.addresses.items()}
        self._tags = itertools.count()

    def start(self, timeout: float = 10.0) -> HostAgents:
        for name, address in self.addresses.items():
            argv = [sys.executable, "-S", "-c", AGENT, address, str(self.port)]
            if name != CONTROL:
                argv = self.network[name].argv(argv)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)
            self.procs[name], self.replies[name] = proc, queue.Queue()
            threading.Thread(target=self._read, args=(proc, self.replies[name]),
                             daemon=True).start()
        for name in self.procs:
            assert self.reply(name, timeout) == "ready", name
        return self

    @staticmethod
    def _read(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> HostAgents:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tell(self, name: str, command: str) -> None:
        stdin = self.procs[name].stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def reply(self, name: str, timeout: float = 10.0) -> Any:
        try:
            return json.loads(self.replies[name].get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"agent on {name} did not answer in {timeout}s") from None

    def ask(self, name: str, command: str, timeout: float = 10.0) -> Any:
        self.tell(name, command)
        return self.reply(name, timeout)

    def ask_all(self, commands: dict[str, str], timeout: float = 10.0) -> dict[str, Any]:
        for name, command in commands.items():
            self.tell(name, command)
        return {name: self.reply(name, timeout) for name in commands}

    def reachability(self, names: Iterable[str] | None = None, window: float = 0.3
                     ) -> set[tuple[str, str]]:
        """Every (src, dst) among ``names`` (default: all, control included) whose UDP
        datagrams reach dst. All send first; then each collects for ``window`` seconds,
        the bound on how late a datagram already sent on a local bridge may arrive."""
        chosen = list(names if names is not None else self.addresses)
        tag = f"t{next(self._tags)}"
        self.ask_all({n: " ".join(["send", tag, *(self.addresses[p] for p in chosen if p != n)])
                      for n in chosen})
        got = self.ask_all({n: f"collect {tag} {window}" for n in chosen})
        return {(self.names[src], dst) for dst, sources in got.items() for src in sources}


def full_mesh(names: Iterable[str]) -> set[tuple[str, str]]:
    chosen = list(names)
    return {(a, b) for a in chosen for b in chosen if a != b}
