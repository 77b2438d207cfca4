"""The node lifecycle as a state machine (hypothesis): random sequences of start, NATS
loss and return, agent crashes, time passing and a stop signal, against a real secured
nats-server and an in-process ``Node``.

Whatever the sequence, once signalled the node ends within ``shutdown_timeout`` (plus a
little for closing) in a documented exit code: ``FAILURE`` when its agent crashed past
the restart budget (``on_exhausted = stop_node``), else ``OK``; and it leaves no task
behind. Each example runs on an event loop of its own; the loop only advances inside a
rule, so time passing is a rule too. (The second signal ends the process with
``os._exit``: tests/integration/node/test_shutdown.py checks it on a real process.)

The registry service is off here: while NATS is away its stop and its agent hooks wait
out their KV timeouts, which the daemon cuts at the deadline; a process then exits, but
in-process its feeds and heartbeats would be the tasks left behind (node/registry.py
stops them after its KV work). test_shutdown.py runs nodes with it, as processes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from broker_agents.agent import FatalAgentError
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from node.embedded import NatsServer, start_server
from node.exitcodes import ExitCode
from node.hosting import AgentChild

SHUTDOWN_TIMEOUT = 2.0
CLOSE_SLACK = 1.0  # closing NATS and HTTP after the deadline
MAX_RESTARTS = 1


class Lifecycle(RuleBasedStateMachine):
    def __init__(self, server: NatsServer, data_dir: Path) -> None:
        super().__init__()
        self.server = server
        if self.server.process is None or self.server.process.poll() is not None:
            self.server.start()
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.node: Node | None = None
        self.stop = asyncio.Event()
        self.running: asyncio.Task[int] | None = None
        self.nats_up = True
        self.crashes = 0
        self.crashed: Any = None  # the runner crashed last
        self.signalled_at: float | None = None

    # -- helpers ---------------------------------------------------------------------

    def _run(self, aw: Any, timeout: float) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(aw, timeout))

    def _config(self) -> Any:
        auth = self.server.auth
        assert auth is not None
        return load_config(
            None,
            node={"id": "lc", "data_dir": self.data_dir, "shutdown_timeout": SHUTDOWN_TIMEOUT},
            nats={"auth": "creds", "servers": self.server.urls,
                  "creds": str(auth.creds[Role.NODE]), "tls_ca": str(auth.ca),
                  "reconnect_wait": 0.05, "max_reconnect_wait": 0.3,
                  "initial_connect_timeout": 60},
            http={"port": 0},
            supervisor={"max_restarts": MAX_RESTARTS, "period": 600,
                        "on_exhausted": "stop_node", "backoff_initial": 0.01},
            services={"registry": {"enabled": False}},
            agents=[{"class": "broker_agents.samples:WorkerAgent", "id": "w"}])

    @property
    def started(self) -> bool:
        return self.running is not None

    # -- rules -----------------------------------------------------------------------

    @precondition(lambda self: not self.started)
    @rule()
    def start(self) -> None:
        self.node = Node(self._config())
        self.running = self.loop.create_task(self.node.run(self.stop))

    @precondition(lambda self: self.nats_up)
    @rule()
    def lose_nats(self) -> None:
        self.server.stop()
        self.nats_up = False

    @precondition(lambda self: not self.nats_up)
    @rule()
    def nats_returns(self) -> None:
        self.server.start()
        self.nats_up = True

    @rule(seconds=st.sampled_from([0.0, 0.05, 0.3]))
    def time_passes(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))  # lets the node run, no sync

    @precondition(lambda self: self.started and self.signalled_at is None
                  and self.crashes <= MAX_RESTARTS)  # the model's state only: replayable
    @rule()
    def crash_agent(self) -> None:
        """Once the agent runs (after the first connect, or its restart), crash it the way
        a handler's ``FatalAgentError`` does (NATS may be away meanwhile)."""
        node = self.node
        assert node is not None and self.running is not None
        if not self.nats_up and node.supervisor is None:
            return  # still starting, and NATS is away: no agent to crash

        async def runner() -> Any:
            while True:
                child = node.supervisor.child("w") if node.supervisor else None
                if ("w" in node.agents and isinstance(child, AgentChild) and child.runner
                        and child.runner is not self.crashed):  # a fresh incarnation
                    return child.runner
                if self.running is not None and self.running.done():
                    return None
                await asyncio.sleep(0.02)  # polled, bounded by the caller's timeout

        agent = self._run(runner(), 15)
        if agent is None:
            return
        agent.crash(FatalAgentError("crashed by the state machine"))
        self.crashed = agent
        self.crashes += 1
        if self.crashes > MAX_RESTARTS:  # the node stops on its own, with FAILURE
            code = self._run(self.running, SHUTDOWN_TIMEOUT + CLOSE_SLACK + 2)
            assert code == ExitCode.FAILURE

    @precondition(lambda self: self.started and self.signalled_at is None)
    @rule()
    def signal(self) -> None:
        self.stop.set()
        self.signalled_at = time.monotonic()

    @invariant()
    def never_exits_by_itself_unless_it_gave_up(self) -> None:
        if self.running is not None and self.running.done() and self.signalled_at is None:
            assert self.running.result() == ExitCode.FAILURE
            assert self.crashes > MAX_RESTARTS

    # -- end -------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.running is not None:
                if self.signalled_at is None and not self.running.done():
                    self.signal()
                signalled = self.signalled_at or time.monotonic()
                code = self._run(self.running, SHUTDOWN_TIMEOUT + CLOSE_SLACK + 2)
                took = time.monotonic() - signalled
                assert code == (ExitCode.FAILURE if self.crashes > MAX_RESTARTS
                                else ExitCode.OK)
                if self.crashes <= MAX_RESTARTS:
                    assert took < SHUTDOWN_TIMEOUT + CLOSE_SLACK, took
                self._assert_no_task_left()
        finally:
            self.loop.close()
            if not self.nats_up:
                self.server.start()

    def _assert_no_task_left(self) -> None:
        async def leftovers() -> list[asyncio.Task[Any]]:
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            if pending:  # tasks cancelled a moment ago may need one more turn to finish
                await asyncio.wait(pending, timeout=1.0)
            return [t for t in pending if not t.done()]

        left = self.loop.run_until_complete(leftovers())
        assert left == [], [t.get_name() + " " + repr(t.get_coro()) for t in left]


def test_node_lifecycle_ends_bounded_in_a_documented_code(tmp_path: Path) -> None:
    server = start_server(tmp_path / "nats")
    runs = iter(range(10_000))
    try:
        run_state_machine_as_test(  # a factory is accepted (hypothesis docs)
            lambda: Lifecycle(server, tmp_path / f"node-{next(runs)}"),  # type: ignore[arg-type]
            settings=settings(max_examples=25, stateful_step_count=8, deadline=None,
                              suppress_health_check=list(HealthCheck)))
    finally:
        server.stop()

