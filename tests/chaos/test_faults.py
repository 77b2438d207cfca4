"""Fault primitives and the seeded schedule, against a recording fake client."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, cast

from chaos.cluster import ProxiedNatsCluster
from chaos.faults import (
    FaultSchedule,
    asymmetric_cut,
    cut_server,
    isolate_client,
    partition,
    slow_links,
)
from chaos.proxyfaults import DisableProxies
from chaos.toxiproxy.client import ToxiproxyClient


@dataclass
class FakeToxi:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail_on: str | None = None

    def set_enabled(self, name: str, enabled: bool) -> None:
        if name == self.fail_on:
            raise RuntimeError("boom")
        self.calls.append(("enabled", name, enabled))

    def add_toxic(self, proxy: str, type: str, stream: str = "downstream",
                  name: str | None = None, **attrs: int) -> str:
        self.calls.append(("add", proxy, type, stream, name, attrs))
        return name or type

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.calls.append(("remove", proxy, name))


def fake_cluster(toxi: FakeToxi) -> ProxiedNatsCluster:
    cluster = ProxiedNatsCluster(base_dir=cast(Any, None), toxi=cast(ToxiproxyClient, toxi))
    cluster.clients["client"] = ["u0", "u1", "u2"]
    return cluster


def test_cut_server_disables_both_directions_to_each_peer_and_heals() -> None:
    toxi = FakeToxi()
    fault = cut_server(fake_cluster(toxi), 1)
    fault.inject()
    assert sorted(c[1] for c in toxi.calls) == [
        "ba_route_0_1", "ba_route_1_0", "ba_route_1_2", "ba_route_2_1"]
    assert all(c[2] is False for c in toxi.calls)
    toxi.calls.clear()
    fault.heal()
    assert len(toxi.calls) == 4 and all(c[2] is True for c in toxi.calls)


def test_isolate_client_disables_only_that_clients_proxies() -> None:
    toxi = FakeToxi()
    isolate_client(fake_cluster(toxi), "client").inject()
    assert [c[1] for c in toxi.calls] == ["ba_client_to_0", "ba_client_to_1", "ba_client_to_2"]


def test_partition_cuts_only_links_across_groups() -> None:
    toxi = FakeToxi()
    partition(fake_cluster(toxi), [[0, 1], [2]]).inject()
    assert sorted(c[1] for c in toxi.calls) == [
        "ba_route_0_2", "ba_route_1_2", "ba_route_2_0", "ba_route_2_1"]


def test_asymmetric_cut_poisons_only_the_src_to_dst_direction() -> None:
    toxi = FakeToxi()
    fault = asymmetric_cut(fake_cluster(toxi), 0, 2)
    fault.inject()
    adds = {(c[1], c[3]) for c in toxi.calls}
    # route_0_2: client is server 0 -> its bytes go upstream; route_2_0: server 0 is upstream
    assert adds == {("ba_route_0_2", "upstream"), ("ba_route_2_0", "downstream")}
    assert all(c[2] == "timeout" and c[5] == {"timeout": 0} for c in toxi.calls)
    toxi.calls.clear()
    fault.heal()
    assert {c[0] for c in toxi.calls} == {"remove"} and len(toxi.calls) == 2


def test_latency_applies_to_both_streams() -> None:
    toxi = FakeToxi()
    slow_links(cast(ToxiproxyClient, toxi), ["p"], 100, 20).inject()
    assert {c[3] for c in toxi.calls} == {"upstream", "downstream"}


def test_same_seed_gives_the_same_plan_and_different_seeds_differ() -> None:
    def plan(seed: int) -> list[dict[str, Any]]:
        toxi = FakeToxi()
        cluster = fake_cluster(toxi)
        sched = FaultSchedule(random.Random(seed))
        sched.random_plan([cut_server(cluster, i) for i in range(3)], duration=20)
        sched.flapping(isolate_client(cluster), start=20, duration=3)
        return sched.plan()

    assert plan(5) == plan(5)
    assert plan(5) != plan(6)
    assert all(step["offset"] <= 23 for step in plan(5))


def test_schedule_records_events_and_heals_everything_at_the_end() -> None:
    toxi = FakeToxi()
    ticks = iter(range(1000))
    sched = FaultSchedule(random.Random(1), clock=lambda: float(next(ticks)))
    fault = DisableProxies(cast(ToxiproxyClient, toxi), ["a"], kind="k", target="a")
    sched.at(0.0, "inject", fault)  # never healed by the plan
    asyncio.run(sched.run())
    assert [e.action for e in sched.events] == ["inject", "heal"]
    assert sched.events[0].at < sched.events[1].at and not sched.active
    assert toxi.calls[-1] == ("enabled", "a", True)


def test_a_failing_fault_is_recorded_not_raised() -> None:
    toxi = FakeToxi(fail_on="a")
    sched = FaultSchedule(random.Random(1))
    fault = DisableProxies(cast(ToxiproxyClient, toxi), ["a"], kind="k", target="a")
    event = sched.apply("inject", sched.add(fault))
    assert event.error == "RuntimeError: boom" and not sched.active



def test_pause_process_stops_and_continues_a_real_process() -> None:
    import os
    import signal
    import subprocess
    import sys

    from chaos.faults import pause_process

    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        fault = pause_process(proc, "sleeper")
        fault.inject()
        # the kernel reports our child's stop and continue as events: no polling
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        fault.heal()
        _, status = os.waitpid(proc.pid, os.WCONTINUED)
        assert os.WIFCONTINUED(status)
    finally:
        proc.kill()
        proc.wait()
    fault.inject()  # a dead process: nothing to pause, and no error
    fault.heal()

def test_cpu_starvation_starts_bounded_busy_workers_and_heal_kills_them() -> None:
    from chaos.faults import CpuStarvation

    fault = CpuStarvation(workers=2, max_seconds=20)
    fault.inject()
    fault.inject()  # idempotent: still two
    procs = list(fault.procs)
    assert len(procs) == 2 and all(p.poll() is None for p in procs)
    fault.heal()
    assert fault.procs == [] and all(p.poll() is not None for p in procs)


def test_cpu_starvation_workers_end_on_their_own_deadline() -> None:
    from chaos.faults import CpuStarvation

    fault = CpuStarvation(workers=1, max_seconds=0.2)
    fault.inject()
    assert fault.procs[0].wait(timeout=10) == 0
    fault.heal()
