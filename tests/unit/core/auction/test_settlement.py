"""The post-close settlement table: every (stage, event) pair is either in the table or
refused as a local protocol error, terminal stages take nothing, and a driver that does
what the table says (crashing anywhere, resumed by successors) keeps the documented escrow
invariants and settles exactly once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.auction.payment import AckRefusal, judge_ack
from broker_agents.core.auction.settlement import (
    HOLDS,
    TERMINAL,
    TRANSITIONS,
    Event,
    Happened,
    Holds,
    Pay,
    RecordStage,
    ReleaseHold,
    ReserveHold,
    SendAward,
    Settlement,
    SettlementEffect,
    Stage,
    allows,
    next_stage,
    step,
)
from broker_agents.core.errors import LocalProtocolError

PAYERS = ("b1", "b2", "b3")


def _owed(min_size: int) -> st.SearchStrategy[tuple[tuple[str, float], ...]]:
    return st.lists(st.sampled_from(PAYERS), unique=True, min_size=min_size, max_size=3).map(
        lambda ps: tuple((p, float(i + 1)) for i, p in enumerate(sorted(ps))))


owed = _owed(0)
settlements = st.builds(
    Settlement, stage=st.sampled_from(Stage), owed=owed, budgets=st.booleans(),
    seller=st.just("market"),
    acked=st.lists(st.sampled_from(PAYERS), unique=True, max_size=3).map(tuple),
    settled=st.lists(st.sampled_from(PAYERS), unique=True, max_size=3).map(tuple))


def _reachable(stage: Stage) -> set[Stage]:
    """``stage`` and every stage the table leads to from it."""
    seen, todo = {stage}, [stage]
    while todo:
        here = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is here and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@settings(max_examples=300)
@given(state=settlements, what=st.sampled_from(Happened), why=st.text(max_size=5))
def test_every_pair_is_in_the_table_or_refused_as_a_local_protocol_error(
    state: Settlement, what: Happened, why: str
) -> None:
    if (state.stage, what) not in TRANSITIONS:
        assert not allows(state.stage, what)
        with pytest.raises(LocalProtocolError):
            step(state, Event(what, why))
        with pytest.raises(LocalProtocolError):
            next_stage(state.stage, what)
        return
    target = next_stage(state.stage, what)
    assert allows(state.stage, what) and target is TRANSITIONS[(state.stage, what)]
    moved = step(state, Event(what, why))
    assert moved.state.stage in _reachable(target)
    records = [e for e in moved.effects if isinstance(e, RecordStage)]
    assert len(records) <= 1  # one write per step, whatever fired by itself
    if records:  # escrow alone is never recorded: a record then still says closed
        assert records[0].stage in (moved.state.stage, Stage.CLOSED)
        assert records[0].finished == (records[0].stage in TERMINAL)


def test_terminal_stages_accept_nothing() -> None:
    for stage, what in itertools.product(sorted(TERMINAL), Happened):
        assert not allows(stage, what)
        with pytest.raises(LocalProtocolError):
            step(Settlement(stage=stage, owed=(("b1", 1.0),), budgets=True, seller="m"),
                 Event(what))


def test_every_stage_has_an_escrow_invariant() -> None:
    assert set(HOLDS) == set(Stage)


@settings(max_examples=200)
@given(state=settlements, what=st.sampled_from(Happened))
def test_holds_are_released_only_after_the_terminal_stage_is_recorded(
    state: Settlement, what: Happened
) -> None:
    """The stage write is the fence: a deposed driver's write fails before it releases
    anything, so it never releases the holds of an auction its successor still settles."""
    if (state.stage, what) not in TRANSITIONS:
        return
    effects = step(state, Event(what)).effects
    releases = [i for i, e in enumerate(effects) if isinstance(e, ReleaseHold)]
    if releases:
        before = [e for e in effects[:releases[0]] if isinstance(e, RecordStage)]
        assert before and before[-1].stage is Stage.FAILED and before[-1].finished


@settings(max_examples=200)
@given(state=settlements, what=st.sampled_from(Happened))
def test_work_comes_last_and_only_a_terminal_stage_has_none(
    state: Settlement, what: Happened
) -> None:
    if (state.stage, what) not in TRANSITIONS:
        return
    moved = step(state, Event(what))
    kinds = [isinstance(e, ReserveHold | SendAward | Pay) for e in moved.effects]
    assert kinds == sorted(kinds)  # no bookkeeping after the work
    if moved.state.stage is not Stage.OPEN:
        assert any(kinds) != (moved.state.stage in TERMINAL)


class _Ledger:
    """Holds and debits keyed by payer for one auction: every operation is idempotent."""

    def __init__(self) -> None:
        self.holds: set[str] = set()
        self.debited: list[str] = []
        self.credited: list[str] = []

    def check(self, stored: Settlement) -> None:
        payers = set(stored.payers)
        holds, paid = self.holds, set(self.debited)
        rule = HOLDS[stored.stage] if stored.budgets else Holds.NONE
        if rule is Holds.NONE:
            assert not holds
        elif rule in (Holds.ANY, Holds.RELEASING):
            assert holds <= payers
        elif rule is Holds.ALL:
            assert holds == payers
        else:
            assert all((p in holds) != (p in paid) for p in payers)
        assert len(self.debited) == len(paid) and len(self.credited) == len(set(self.credited))


def _record(stored: Settlement, eff: RecordStage) -> Settlement:
    return Settlement(stage=eff.stage, owed=stored.owed, budgets=stored.budgets,
                      seller=stored.seller, reserved=eff.reserved, acked=eff.acked,
                      settled=eff.settled, failure=eff.failure)


@settings(max_examples=400, deadline=None)
@given(owed=_owed(1), budgets=st.booleans(), data=st.data())
def test_drivers_that_crash_anywhere_keep_the_escrow_invariants_and_settle_once(
    owed: tuple[tuple[str, float], ...], budgets: bool, data: st.DataObject
) -> None:
    ledger = _Ledger()
    stored = Settlement(stage=Stage.CLOSED, owed=owed, budgets=budgets, seller="market")
    for _ in range(20):  # successive drivers, each resuming what the record says
        if stored.stage in TERMINAL:
            break
        moved = step(stored, Event(Happened.RESUME))
        crashed = False
        while not crashed:
            happened: Event | None = None
            effects: list[SettlementEffect] = list(moved.effects)
            for eff in effects:
                if data.draw(st.integers(0, 9), label="crash") == 0:
                    crashed = True
                    break
                if isinstance(eff, RecordStage):
                    stored = _record(stored, eff)
                elif isinstance(eff, ReleaseHold):
                    ledger.holds.discard(eff.payer)
                elif isinstance(eff, ReserveHold):
                    if happened is None:
                        if data.draw(st.integers(0, 5), label="refuse") == 0:
                            happened = Event(Happened.RESERVE_REFUSED, "no funds")
                        else:
                            ledger.holds.add(eff.payer)
                elif isinstance(eff, SendAward):
                    if data.draw(st.integers(0, 5), label="silent") == 0:
                        happened = Event(Happened.ACK_MISSING, f"{eff.winner} is silent")
                elif (isinstance(eff, Pay) and happened is None and not ledger.debited
                      and data.draw(st.integers(0, 5), label="unverifiable") == 0):
                    # the driver checks every payer before it debits anyone
                    happened = Event(Happened.UNVERIFIABLE, f"{eff.payer}: no_evidence")
                elif (isinstance(eff, Pay) and happened is None
                      and eff.payer not in ledger.debited):
                    assert eff.payer in ledger.holds, "a debit consumes the hold"
                    ledger.holds.discard(eff.payer)
                    ledger.debited.append(eff.payer)
                    ledger.credited.append(eff.payer)
                ledger.check(stored)
            if crashed or moved.state.stage in TERMINAL:
                break
            work = next(e for e in effects if isinstance(e, ReserveHold | SendAward | Pay))
            if happened is None:
                happened = Event({ReserveHold: Happened.RESERVED, SendAward:
                                  Happened.ACKNOWLEDGED, Pay: Happened.SETTLED}[type(work)])
            moved = step(moved.state, happened)
    ledger.check(stored)
    if stored.stage in TERMINAL:  # the reconcile sweep: a terminal auction's holds go
        ledger.holds.clear()
    if stored.stage is Stage.SETTLED:
        assert sorted(ledger.debited) == (sorted(stored.payers) if budgets else [])
        assert stored.acked == stored.payers
    else:
        assert not ledger.debited  # nothing is paid unless the auction settles


def test_an_unverifiable_payment_fails_an_acked_auction_and_releases_every_hold() -> None:
    acked = Settlement(stage=Stage.ACKED, owed=(("b1", 2.0), ("b2", 3.0)), budgets=True,
                       seller="m", reserved=("b1", "b2"), acked=("b1", "b2"))
    moved = step(acked, Event(Happened.UNVERIFIABLE, "b2: no_evidence"))
    assert moved.state.stage is Stage.FAILED and moved.state.failure == "b2: no_evidence"
    assert moved.effects == [
        RecordStage(stage=Stage.FAILED, reserved=("b1", "b2"), acked=("b1", "b2"),
                    settled=(), failure="b2: no_evidence", finished=True),
        ReleaseHold("b1"), ReleaseHold("b2")]


@pytest.mark.parametrize(("signer", "ack", "amount", "refusal"), [
    ("w", {"auction_id": "a1", "bidder": "w", "accepted": True, "total": 5.0}, 5.0, None),
    ("w", {"auction_id": "a1", "accepted": True, "total": 9}, 5.0, None),
    ("m", {"auction_id": "a1", "bidder": "w", "accepted": True, "total": 5.0}, 5.0,
     AckRefusal.NOT_THE_PAYER),
    ("w", {"auction_id": "a1", "bidder": "m", "accepted": True, "total": 5.0}, 5.0,
     AckRefusal.NOT_THE_PAYER),
    ("w", ["a1", True, 5.0], 5.0, AckRefusal.NOT_AN_ACK),
    ("w", {"auction_id": "a2", "accepted": True, "total": 5.0}, 5.0,
     AckRefusal.WRONG_AUCTION),
    ("w", {"auction_id": "a1", "accepted": False, "total": 5.0}, 5.0, AckRefusal.DECLINED),
    ("w", {"auction_id": "a1", "accepted": 1, "total": 5.0}, 5.0, AckRefusal.DECLINED),
    ("w", {"auction_id": "a1", "accepted": True, "total": 4.99}, 5.0,
     AckRefusal.TOTAL_TOO_LOW),
    ("w", {"auction_id": "a1", "accepted": True}, 5.0, AckRefusal.TOTAL_TOO_LOW),
    ("w", {"auction_id": "a1", "accepted": True, "total": True}, 1.0,
     AckRefusal.TOTAL_TOO_LOW),
    ("w", {"auction_id": "a1", "accepted": True, "total": float("nan")}, 1.0,
     AckRefusal.TOTAL_TOO_LOW),
])
def test_an_acknowledgement_allows_a_debit_only_when_it_is_the_payers_and_covers_it(
        signer: str, ack: object, amount: float, refusal: AckRefusal | None) -> None:
    assert judge_ack(signer, "w", ack, "a1", amount) == refusal
