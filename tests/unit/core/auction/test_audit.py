"""The escrow and money audit: which holds are orphaned (the reconcile releases exactly
those), which are unexpected, and whether the books balance."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core import budget as B
from broker_agents.core.auction.audit import (
    AuctionView,
    Reason,
    Verdict,
    audit,
    judge_hold,
    orphans,
)
from broker_agents.core.auction.settlement import HOLDS, TERMINAL, Holds, Stage

NOW = 100_000
GRACE = 5_000


def _held(owner: str, auction_id: str, amount: float, taken_ms: int | None = NOW) -> B.Account:
    return B.reserve(B.open_account(owner, 50.0), auction_id, amount, taken_ms=taken_ms,
                     by="auc-1", lease=0)


def _verdict(account: B.Account, auctions: dict[str, AuctionView | None]) -> tuple[Verdict,
                                                                                 Reason | None]:
    (aid, hold), = account.holds.items()
    h = judge_hold(account.owner, aid, hold, auctions, NOW, GRACE)
    return h.verdict, h.reason


def test_a_hold_of_a_terminal_auction_is_orphaned_whatever_the_stage() -> None:
    for stage in TERMINAL:
        assert _verdict(_held("b", "a1", 5.0), {"a1": AuctionView(stage)}) == (
            Verdict.ORPHANED, Reason.TERMINAL)


def test_a_hold_naming_no_auction_is_pending_then_orphaned_after_the_grace() -> None:
    assert _verdict(_held("b", "a1", 5.0, NOW - GRACE), {}) == (Verdict.PENDING, None)
    assert _verdict(_held("b", "a1", 5.0, NOW - GRACE - 1), {}) == (
        Verdict.ORPHANED, Reason.UNKNOWN_AUCTION)
    assert _verdict(_held("b", "a1", 5.0, None), {}) == (  # older holds carry no time
        Verdict.ORPHANED, Reason.UNKNOWN_AUCTION)


def test_running_auctions_keep_their_holds_unless_the_stage_forbids_them() -> None:
    owed = {"b": 5.0}
    for stage in (Stage.CLOSED, Stage.ACKED):
        assert _verdict(_held("b", "a1", 5.0), {"a1": AuctionView(stage, owed)}) == (
            Verdict.IN_FLIGHT, None)
        assert _verdict(_held("b", "a1", 5.0), {"a1": AuctionView(stage)}) == (
            Verdict.IN_FLIGHT, None)  # the sweep reads the stage only
        assert _verdict(_held("c", "a1", 5.0), {"a1": AuctionView(stage, owed)}) == (
            Verdict.UNEXPECTED, Reason.NOT_A_PAYER)
        assert _verdict(_held("b", "a1", 4.0), {"a1": AuctionView(stage, owed)}) == (
            Verdict.UNEXPECTED, Reason.WRONG_AMOUNT)
    assert _verdict(_held("b", "a1", 5.0), {"a1": AuctionView(Stage.OPEN, owed)}) == (
        Verdict.UNEXPECTED, Reason.STAGE_FORBIDS)


def test_an_unreadable_auction_record_is_never_a_reason_to_release() -> None:
    account = _held("b", "a1", 5.0, None)
    assert _verdict(account, {"a1": None}) == (Verdict.UNREADABLE, None)
    assert orphans([account], {"a1": None}, NOW, GRACE) == []


@settings(max_examples=300)
@given(stage=st.sampled_from(Stage) | st.none(), taken=st.integers(0, 2 * NOW),
       grace=st.integers(0, NOW))
def test_only_terminal_or_long_unknown_auctions_orphan_a_hold(
        stage: Stage | None, taken: int, grace: int) -> None:
    account = _held("b", "a1", 5.0, taken)
    auctions = {} if stage is None else {"a1": AuctionView(stage, {"b": 5.0})}
    found = orphans([account], auctions, NOW, grace)
    expected = (stage in TERMINAL) if stage is not None else NOW - taken > grace
    assert bool(found) == expected
    if found and stage is not None:  # the invariant table agrees: no hold at rest
        assert HOLDS[stage] in (Holds.NONE, Holds.RELEASING)


def test_the_books_balance_after_deposits_escrow_and_settlements() -> None:
    buyer = B.deposit(B.open_account("buyer"), "d", 100.0)
    seller = B.open_account("seller")
    buyer = B.reserve(buyer, "a1", 30.0, taken_ms=NOW)
    buyer, seller = B.settle(buyer, seller, "a1", 25.0)
    buyer = B.reserve(buyer, "a2", 10.0, taken_ms=NOW)
    report = audit([buyer, seller], {"a1": AuctionView(Stage.SETTLED, {"buyer": 25.0}),
                                     "a2": AuctionView(Stage.CLOSED, {"buyer": 10.0})},
                   NOW, GRACE)
    assert report.ok, report.problems
    t = report.totals
    assert (t.balance, t.held, t.deposited, t.paid, t.received) == (100.0, 10.0, 100.0,
                                                                    25.0, 25.0)
    assert [h.verdict for h in report.holds] == [Verdict.IN_FLIGHT]
    assert report.to_json()["holds"][0]["verdict"] == "in_flight"


def test_an_orphan_or_a_broken_identity_or_unbalanced_totals_are_problems() -> None:
    orphan = _held("b", "a1", 5.0)
    assert audit([orphan], {"a1": AuctionView(Stage.FAILED)}, NOW, GRACE).hold_problems == [
        "account 'b' holds 5.0 for auction 'a1' (failed): orphaned (terminal)"]
    forged = B.open_account("c", 10.0).model_copy(update={"balance": 20.0})
    report = audit([forged], {}, NOW, GRACE)
    assert not report.ok and "balance 20.0 != deposited 10.0" in report.book_problems[0]
    payer = B.debit(B.reserve(B.open_account("p", 10.0), "a1", 4.0), "a1", 4.0)  # unpaid seller
    report = audit([payer], {"a1": AuctionView(Stage.ACKED)}, NOW, GRACE)
    assert report.ok and report.totals.settling == 1  # in flight: not judged
    report = audit([payer], {"a1": AuctionView(Stage.SETTLED)}, NOW, GRACE)
    assert report.book_problems == ["money not conserved: total paid 4.0 != total received "
                                    "0.0 with no settlement in flight"]


def test_every_verdict_and_reason_is_reachable() -> None:
    seen = set()
    stages: list[Stage | None] = [*Stage, None]
    for stage, owner, amount, taken in itertools.product(stages, ("b", "c"), (5.0, 4.0),
                                                          (NOW, 0)):
        auctions: dict[str, AuctionView | None] = (
            {} if stage is None else {"a1": AuctionView(stage, {"b": 5.0})})
        seen.add(_verdict(_held(owner, "a1", amount, taken), auctions))
    seen.add(_verdict(_held("b", "a1", 5.0), {"a1": None}))
    assert {v for v, _ in seen} == set(Verdict)
    assert {r for _, r in seen if r is not None} == set(Reason)
