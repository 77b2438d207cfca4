"""The money watcher against a real secured server: the treasury's gauges follow the
accounts bucket, ``issued`` is what the treasury deposited minus what it paid out, and
money that appears in the bucket without a deposit shows as a conservation mismatch."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.moneywatch import MoneyWatch, totals
from broker_agents.auction.treasury import TreasuryAgent, treasury_request
from broker_agents.core.budget import Account, Hold
from broker_agents.kv import open_bucket
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from tests.integration.test_runtime import Hosted

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def synced(hosted: Hosted) -> None:
    """The treasury's watch has applied every write acknowledged before this call."""
    agent = hosted.runners["treasury"].agent
    assert isinstance(agent, TreasuryAgent)
    assert await agent.money.mirror.sync(timeout=10.0)


@pytest.fixture
async def treasury(connect: Connect) -> AsyncIterator[Hosted]:
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(TreasuryAgent("treasury", max_amount=1e6))
    yield hosted
    await hosted.stop_all()


def test_totals_of_accounts() -> None:
    now = 1_000_000
    a = Account(owner="a", balance=70.0, deposited=100.0, withdrawn=30.0,
                holds={"x": Hold(amount=20.0, taken_ms=now - 5000),
                       "y": Hold(amount=5.0)})
    b = Account(owner="b", balance=40.0, deposited=50.0, paid=10.0,
                holds={"z": Hold(amount=1.0, taken_ms=now - 2000)})
    got = totals([a, b], now)
    assert (got.balances, got.held, got.issued, got.in_flight) == (110.0, 26.0, 120.0, 10.0)
    assert (got.accounts, got.oldest_hold_age_s) == (2, 5.0)
    assert totals([], now).oldest_hold_age_s == 0.0


async def test_the_treasury_reports_where_the_money_is(
        treasury: Hosted, connect: Connect, nc: NATS) -> None:
    admin = await connect(Role.ADMIN, user="treasurer")
    await treasury_request(admin, "deposit", {"op_id": "d-1", "owner": "alice", "amount": 100.0})
    await treasury_request(admin, "deposit", {"op_id": "d-2", "owner": "bob", "amount": 50.0})
    await treasury_request(admin, "withdraw", {"op_id": "w-1", "owner": "alice", "amount": 30.0})
    # A repeated deposit issues nothing (op_id idempotency shows in the gauge).
    await treasury_request(admin, "deposit", {"op_id": "d-2", "owner": "bob", "amount": 50.0})
    await synced(treasury)
    assert gauge("ba_money_issued") == pytest.approx(120.0)
    assert gauge("ba_money_balances") == pytest.approx(120.0)
    assert gauge("ba_money_accounts") == 2

    kv = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    taken = time.time_ns() // 1_000_000 - 600_000  # a hold taken ten minutes ago
    await Ledger(kv).reserve("bob", "auction-1", 20.0, taken_ms=taken, by="a1", lease=0)
    await synced(treasury)
    assert gauge("ba_money_held") == pytest.approx(20.0)
    age = gauge("ba_escrow_oldest_hold_age_seconds")
    assert age is not None and 600 <= age < 700

    # Money written into the bucket past the treasury: balances no longer match issued.
    forged = Account(owner="mallory", balance=500.0, deposited=0.0)
    await kv.put("mallory", codec.encode(forged.model_dump(mode="json")))
    await synced(treasury)
    assert gauge("ba_money_balances") == pytest.approx(620.0)
    assert gauge("ba_money_issued") == pytest.approx(120.0)
    # An unusable record is counted, not summed.
    await kv.put("broken", b"\xff not an account")
    await synced(treasury)
    assert gauge("ba_money_corrupt_accounts") == 1
    assert gauge("ba_money_balances") == pytest.approx(620.0)


async def test_the_newest_live_watcher_answers_and_none_means_no_value(nc: NATS) -> None:
    kv = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    await Ledger(kv).deposit("carol", 5.0, "d-carol")
    older, newer = MoneyWatch(kv, S.bucket("accounts")), MoneyWatch(kv, S.bucket("accounts"))
    await older.start()
    await newer.start()
    await newer.stop()  # the older one still watches: it answers
    assert gauge("ba_money_balances") == pytest.approx(5.0)
    await older.stop()
    value = gauge("ba_money_balances")
    assert value is not None and value != value  # NaN: absent, never a fake conservation
