"""Budget ledger: escrow, exactly-once settlement, caps, and invariants under interleaving."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.core import budget as B
from broker_agents.core.errors import BrokerError


def test_reserve_then_settle_moves_money_once() -> None:
    buyer, seller = B.open_account("buyer", 100.0), B.open_account("seller", 0.0)
    buyer = B.reserve(buyer, "a1", 30.0)
    assert (buyer.reserved, buyer.available) == (30.0, 70.0)
    buyer, seller = B.settle(buyer, seller, "a1", 25.0)
    assert (buyer.balance, buyer.reserved, seller.balance) == (75.0, 0.0, 25.0)
    again = B.settle(buyer, seller, "a1", 25.0)
    assert again[0] is buyer and again[1] is seller


def test_bid_above_available_funds_is_insufficient_funds() -> None:
    buyer = B.reserve(B.open_account("buyer", 50.0), "a1", 40.0)
    with pytest.raises(BrokerError) as info:
        B.reserve(buyer, "a2", 20.0)
    assert info.value.code == "insufficient_funds"


def test_cost_over_per_task_cap_says_it_exceeds_the_maximum() -> None:
    account = B.open_account("buyer", 1000.0, max_per_task=10.0)
    with pytest.raises(BrokerError) as info:
        B.check_cost(account, 12.5)
    assert info.value.code == "budget_exceeded"
    assert info.value.message == "cost 12.5 exceeds the maximum per-task budget 10.0"


def test_release_on_abort_frees_the_hold_and_is_idempotent() -> None:
    account = B.reserve(B.open_account("b", 10.0), "a1", 10.0)
    released = B.release(account, "a1")
    assert released.available == 10.0 and released.version == account.version + 1
    assert B.release(released, "a1") is released


def test_reserve_is_idempotent_but_conflicting_amount_is_an_error() -> None:
    account = B.reserve(B.open_account("b", 10.0), "a1", 4.0)
    assert B.reserve(account, "a1", 4.0) is account
    with pytest.raises(BrokerError) as info:
        B.reserve(account, "a1", 5.0)
    assert info.value.code == "conflict"


def test_reserve_after_settlement_does_not_lock_funds_again() -> None:
    account = B.debit(B.reserve(B.open_account("b", 10.0), "a1", 4.0), "a1", 4.0)
    with pytest.raises(BrokerError) as info:
        B.reserve(account, "a1", 4.0)
    assert info.value.code == "conflict" and info.value.details["fenced"] == "paid"


def test_a_release_fences_the_auction_even_before_any_hold_exists() -> None:
    """The takeover race of issue 19: the successor releases first, the deposed driver's
    reserve comes after; it must be refused, not lock funds for good."""
    account = B.open_account("b", 10.0)
    released = B.release(account, "a1")
    assert released is not account and released.holds == {}
    assert released.fenced("a1") == "released" and B.release(released, "a1") is released
    with pytest.raises(BrokerError) as info:
        B.reserve(released, "a1", 4.0)
    assert info.value.code == "conflict" and info.value.details["fenced"] == "released"
    assert B.reserve(released, "a2", 4.0).holds["a2"].amount == 4.0  # other auctions: fine


def test_a_hold_describes_itself() -> None:
    account = B.reserve(B.open_account("b", 10.0), "a1", 4.0, taken_ms=1234, by="auc-1",
                        lease=2)
    assert account.holds["a1"] == B.Hold(amount=4.0, taken_ms=1234, by="auc-1", lease=2)


def test_older_records_load_bare_holds_and_count_their_balance_as_deposited() -> None:
    old = {"owner": "b", "balance": 12.5, "holds": {"a1": 2.5}, "applied": ["debit:a0"],
           "version": 7, "reserved": 2.5}
    account = B.Account.model_validate(codec.decode(codec.encode(old)))
    assert account.holds == {"a1": B.Hold(amount=2.5)} and account.reserved == 2.5
    assert (account.deposited, account.paid, account.received) == (12.5, 0.0, 0.0)
    assert B.release(account, "a1").available == 12.5


def test_cumulative_totals_follow_deposits_and_settlements() -> None:
    buyer, seller = B.deposit(B.open_account("buyer"), "d1", 100.0), B.open_account("seller")
    buyer = B.reserve(buyer, "a1", 30.0)
    buyer, seller = B.settle(buyer, seller, "a1", 25.0)
    assert (buyer.deposited, buyer.paid, buyer.received) == (100.0, 25.0, 0.0)
    assert (seller.deposited, seller.paid, seller.received) == (0.0, 0.0, 25.0)
    for acc in (buyer, seller):
        assert acc.balance == acc.deposited - acc.paid + acc.received


def test_a_debit_needs_a_hold_of_that_auction_covering_the_amount() -> None:
    """Issue 13: a forged settlement debited an agent that never bid. Money leaves an
    account only as escrow its auction took."""
    cases = [(B.open_account("b", 3.0), "no_hold"),  # no hold at all
             (B.reserve(B.open_account("b", 10.0), "other", 8.0), "no_hold"),  # another's
             (B.reserve(B.open_account("b", 10.0), "a1", 4.0), "hold_too_small")]
    for account, refusal in cases:
        assert B.can_debit(account, "a1", 5.0) == refusal
        with pytest.raises(BrokerError) as info:
            B.debit(account, "a1", 5.0)
        assert info.value.code == "rejected" and info.value.details["refusal"] == refusal
    held = B.reserve(B.open_account("b", 10.0), "a1", 6.0)
    assert B.can_debit(held, "a1", 5.0) is None
    paid = B.debit(held, "a1", 5.0)  # the price may be below the hold (Vickrey)
    assert (paid.balance, paid.reserved, paid.paid) == (5.0, 0.0, 5.0)
    assert B.can_debit(paid, "a1", 5.0) is None and B.debit(paid, "a1", 5.0) is paid
    for bad in (-1.0, math.nan, math.inf):
        assert B.can_debit(held, "a1", bad) == "invalid_amount"


def test_invalid_amounts_are_validation_errors() -> None:
    for bad in (-1.0, 0.0, math.nan, math.inf):
        for op in (B.deposit, B.withdraw):
            with pytest.raises(BrokerError) as info:
                op(B.open_account("b", 5.0), "d", bad)
            assert info.value.code == "validation_error"


def test_withdrawals_take_only_available_money_once_and_keep_the_books() -> None:
    account = B.reserve(B.deposit(B.open_account("b"), "d1", 10.0), "a1", 4.0)
    with pytest.raises(BrokerError) as info:
        B.withdraw(account, "w1", 7.0)  # 4 of the 10 are escrowed
    assert info.value.code == "insufficient_funds"
    out = B.withdraw(account, "w1", 6.0)
    assert (out.balance, out.reserved, out.withdrawn) == (4.0, 4.0, 6.0)
    assert B.withdraw(out, "w1", 6.0) is out  # the same op id: nothing more
    assert out.balance == out.deposited - out.withdrawn - out.paid + out.received


def test_a_frozen_account_takes_no_hold_and_withdraws_nothing_but_still_settles() -> None:
    held = B.reserve(B.open_account("b", 10.0), "a1", 4.0)
    frozen = B.set_frozen(held, "f1", True)
    assert frozen.frozen and frozen.available == 0.0 and B.set_frozen(frozen, "f1", True) is frozen
    for attempt in (lambda: B.reserve(frozen, "a2", 1.0),
                    lambda: B.withdraw(frozen, "w1", 1.0)):
        with pytest.raises(BrokerError) as info:
            attempt()
        assert info.value.code == "rejected" and info.value.details["frozen"] is True
    assert B.debit(frozen, "a1", 4.0).balance == 6.0  # a hold taken before still pays
    thawed = B.set_frozen(frozen, "u1", False)
    assert B.reserve(thawed, "a2", 1.0).reserved == 5.0


@pytest.mark.parametrize("record", [
    {"owner": "b", "balance": 10.0, "holds": {"a1": -1e9}},           # negative hold
    {"owner": "b", "balance": -5.0},                                  # negative balance
    {"owner": "b", "balance": 10.0, "holds": {"a1": 8.0, "a2": 8.0}},  # escrow > balance
    {"owner": "b", "balance": float("nan")},
    {"owner": "b", "balance": 1.0, "applied": ["x"] * (B.APPLIED_LIMIT + 1)},
    {"owner": "", "balance": 1.0},
    {"balance": 1.0},
])
def test_records_no_budget_operation_could_write_are_refused_on_read(
        record: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        B.Account.model_validate(codec.decode(codec.encode(record)))


def test_applied_ids_are_bounded() -> None:
    account = B.open_account("b")
    for i in range(B.APPLIED_LIMIT + 50):
        account = B.deposit(account, f"d{i}", 1.0)
    assert len(account.applied) == B.APPLIED_LIMIT
    assert account.applied[-1] == f"deposit:d{B.APPLIED_LIMIT + 49}"
    assert "deposit:d0" not in account.applied


def test_account_round_trips_through_the_wire_with_reserved_visible() -> None:
    account = B.reserve(B.open_account("b", 10.0, max_per_task=5.0), "a1", 2.5)
    for as_json in (False, True):
        wire = codec.decode(codec.encode(account, as_json=as_json))
        assert wire["reserved"] == 2.5
        assert B.Account.model_validate(wire) == account


# ---- one auction's escrow under any interleaving ----

AUCTION = "x"
PRICE = 6.0
escrow_ops = st.lists(st.tuples(
    st.sampled_from(["reserve", "release", "debit", "credit", "deposit", "other"]),
    st.floats(0.0, 30.0, allow_nan=False),
), max_size=40)


@settings(max_examples=500)
@given(escrow_ops)
def test_no_hold_survives_once_the_auction_is_released_or_paid(
        script: list[tuple[str, float]]) -> None:
    """Any order of reserve / release / debit / credit for one auction (each applied to the
    record it replaces, as the CAS guarantees; redelivered, late or early) leaves no hold
    once a release or the debit has been applied, and keeps the books balanced."""
    payer, payee = B.open_account("p", 20.0), B.open_account("s")
    ended = False
    for n, (kind, amount) in enumerate(script):
        try:
            if kind == "reserve":
                payer = B.reserve(payer, AUCTION, amount, taken_ms=n, by="auc")
            elif kind == "release":
                payer = B.release(payer, AUCTION)
                ended = True
            elif kind == "debit":
                payer = B.debit(payer, AUCTION, PRICE)
                ended = True
            elif kind == "credit":
                payee = B.credit(payee, AUCTION, "p", PRICE)
            elif kind == "deposit":
                payer = B.deposit(payer, f"d{n}", amount)
            else:  # another auction's escrow competes for the same funds
                payer = B.reserve(payer, f"y{n}", amount)
        except BrokerError:
            pass
        if ended:
            assert AUCTION not in payer.holds
        for acc in (payer, payee):
            assert acc.balance >= 0.0 and acc.reserved <= acc.balance + 1e-9
            assert math.isclose(acc.balance, acc.deposited - acc.paid + acc.received,
                                abs_tol=1e-9)


# ---- random operation sequences ----

OWNERS = ["a", "b", "c"]
Op = tuple[str, str, str, str, float]  # kind, who, other, auction id, amount

ops = st.lists(st.tuples(
    st.sampled_from(["reserve", "release", "settle", "deposit", "check"]),
    st.sampled_from(OWNERS), st.sampled_from(OWNERS),
    st.sampled_from([f"x{i}" for i in range(6)]),
    st.floats(0.0, 60.0, allow_nan=False),
), max_size=60)


def _apply(accounts: dict[str, B.Account], op: Op,
           prices: dict[tuple[str, str], float]) -> float:
    """Apply one operation; returns money added from outside (deposits).

    As in the real system, an auction's outcome fixes the payee (its seller) and each
    payer's price, so a settlement is always replayed with the same parameters.
    """
    kind, who, _, auction_id, amount = op
    other = OWNERS[int(auction_id[1:]) % len(OWNERS)]
    if kind == "settle":
        amount = prices.setdefault((auction_id, who), amount)
    try:
        if kind == "reserve":
            accounts[who] = B.reserve(accounts[who], auction_id, amount)
        elif kind == "release":
            accounts[who] = B.release(accounts[who], auction_id)
        elif kind == "settle" and who != other:
            accounts[who], accounts[other] = B.settle(accounts[who], accounts[other],
                                                      auction_id, amount)
        elif kind == "deposit":
            before = accounts[who]
            accounts[who] = B.deposit(before, auction_id, amount)
            return accounts[who].balance - before.balance
        elif kind == "check":
            B.check_cost(accounts[who], amount)
    except BrokerError:
        pass
    return 0.0


def _check(accounts: dict[str, B.Account], total: float) -> None:
    for acc in accounts.values():
        assert B.Account.model_validate(acc.model_dump()) == acc  # reads back as valid
        assert acc.balance >= 0.0
        assert acc.reserved >= 0.0
        assert acc.reserved <= acc.balance + 1e-9
        assert math.isclose(acc.balance, acc.deposited - acc.paid + acc.received,
                            abs_tol=1e-6)
    assert math.isclose(sum(a.paid for a in accounts.values()),
                        sum(a.received for a in accounts.values()), abs_tol=1e-6)
    assert math.isclose(sum(a.balance for a in accounts.values()), total, abs_tol=1e-6)


@settings(max_examples=400)
@given(ops)
def test_balances_never_negative_and_money_conserved(script: list[Op]) -> None:
    accounts = {o: B.open_account(o, 50.0, max_per_task=40.0) for o in OWNERS}
    total = 150.0
    prices: dict[tuple[str, str], float] = {}
    for op in script:
        total += _apply(accounts, op, prices)
        _check(accounts, total)


@settings(max_examples=200)
@given(ops)
def test_replaying_every_operation_twice_changes_nothing_more(script: list[Op]) -> None:
    once = {o: B.open_account(o, 50.0) for o in OWNERS}
    twice = dict(once)
    prices: dict[tuple[str, str], float] = {}
    for op in script:
        _apply(once, op, prices)
        _apply(twice, op, prices)
        if op[0] != "check":
            _apply(twice, op, prices)  # a redelivered command, e.g. a duplicate settlement
    assert {o: a.balance for o, a in once.items()} == {o: a.balance for o, a in twice.items()}


class CasStore:
    """A KV bucket in miniature: get returns (value, revision); update is CAS."""

    def __init__(self, accounts: dict[str, B.Account]) -> None:
        self.data = {k: (v, 1) for k, v in accounts.items()}

    def get(self, key: str) -> tuple[B.Account, int]:
        return self.data[key]

    def update(self, key: str, value: B.Account, last: int) -> bool:
        if self.data[key][1] != last:
            return False
        self.data[key] = (value, last + 1)
        return True


def test_concurrent_drivers_with_cas_keep_balances_non_negative(sim_seeds: list[int]) -> None:
    """Several drivers read, compute and CAS-write in random interleavings and retry."""
    conflicts = 0
    for seed in sim_seeds[:300]:
        rng = random.Random(seed)
        store = CasStore({o: B.open_account(o, 20.0) for o in OWNERS})
        pending: list[tuple[str, Callable[[B.Account], B.Account]]] = []
        for i in range(12):
            who = rng.choice(OWNERS)
            auction_id = f"x{rng.randint(0, 3)}"
            amount = float(rng.randint(1, 25))
            pending.append((who, rng.choice([
                lambda a, x=auction_id, m=amount: B.reserve(a, x, m),
                lambda a, x=auction_id, m=amount: B.debit(a, x, m),
                lambda a, x=auction_id: B.release(a, x),
            ])))
            del i
        reads: dict[int, tuple[B.Account, int]] = {}
        debited = 0.0
        while pending:
            k = rng.randrange(len(pending))
            who, fn = pending[k]
            if k not in reads or rng.random() < 0.5:
                reads[k] = store.get(who)  # a (possibly stale) read
                continue
            account, rev = reads.pop(k)
            try:
                new = fn(account)
            except BrokerError:
                pending.pop(k)
                reads = {j - (j > k): r for j, r in reads.items() if j != k}
                continue
            if store.update(who, new, rev):
                debited += account.balance - new.balance
                pending.pop(k)
                reads = {j - (j > k): r for j, r in reads.items() if j != k}
            else:
                conflicts += 1  # CAS failed: the driver re-reads and retries
        final = [store.get(o)[0] for o in OWNERS]
        assert all(a.balance >= 0 and a.reserved <= a.balance for a in final), f"seed {seed}"
        assert math.isclose(sum(a.balance for a in final) + debited, 60.0), (
            f"seed {seed}: replay with pytest {__file__} --seed {seed}")
    assert conflicts > 0 or len(sim_seeds) < 20, "the interleavings never raced"
