"""Winner determination: feasibility, optimality against brute force, greedy fallback."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.auction import wdp

ITEMS = ["a", "b", "c", "d", "e"]

bundle_bids = st.lists(
    st.tuples(st.integers(0, 3), st.frozensets(st.sampled_from(ITEMS), min_size=1),
              st.integers(1, 50).map(float)),
    max_size=9,
).map(lambda rows: [wdp.BundleBid(seq=i, bidder=f"b{who}", items=items, amount=amount)
                    for i, (who, items, amount) in enumerate(rows)])


def brute_force(bids: list[wdp.BundleBid]) -> float:
    best = 0.0
    for size in range(1, len(bids) + 1):
        for chosen in combinations(bids, size):
            items = [i for b in chosen for i in b.items]
            if len(items) == len(set(items)):
                best = max(best, sum(b.amount for b in chosen))
    return best


def assert_feasible(bids: list[wdp.BundleBid], alloc: wdp.Allocation) -> None:
    by_seq = {b.seq: b for b in bids}
    items = [i for s in alloc.seqs for i in by_seq[s].items]
    assert len(items) == len(set(items)), "an item was allocated twice"
    assert alloc.revenue == sum(by_seq[s].amount for s in alloc.seqs)


@settings(max_examples=300)
@given(bundle_bids)
def test_exact_solver_never_double_allocates_and_matches_brute_force(
    bids: list[wdp.BundleBid],
) -> None:
    alloc = wdp.solve(bids)
    assert alloc.exact
    assert_feasible(bids, alloc)
    assert alloc.revenue == brute_force(bids)


@settings(max_examples=200)
@given(bundle_bids)
def test_greedy_fallback_is_feasible_and_within_sqrt_m_of_optimum(
    bids: list[wdp.BundleBid],
) -> None:
    alloc = wdp.solve(bids, work_limit=0)
    assert_feasible(bids, alloc)
    optimum = brute_force(bids)
    assert alloc.revenue <= optimum
    if bids and len(alloc.seqs) > 0 and optimum > alloc.revenue:
        assert not alloc.exact
    assert alloc.revenue * len(ITEMS) ** 0.5 >= optimum


@settings(max_examples=200)
@given(bundle_bids)
def test_tie_flag_means_another_optimal_allocation_exists(bids: list[wdp.BundleBid]) -> None:
    alloc = wdp.solve(bids)
    optimum = alloc.revenue
    count = 0
    for size in range(1, len(bids) + 1):
        for chosen in combinations(bids, size):
            items = [i for b in chosen for i in b.items]
            if len(items) == len(set(items)) and sum(b.amount for b in chosen) == optimum:
                count += 1
    assert alloc.tie_broken == (count > 1)


def test_solver_is_exact_with_seventeen_items_of_singletons_and_pairs() -> None:
    items = [f"i{k}" for k in range(17)]
    bids = [wdp.BundleBid(seq=k, bidder=f"b{k}", items=frozenset({items[k]}), amount=1.0)
            for k in range(17)]
    bids += [wdp.BundleBid(seq=17 + k, bidder=f"p{k}",
                           items=frozenset({items[k], items[k + 1]}), amount=2.5)
             for k in range(16)]
    alloc = wdp.solve(bids)
    assert alloc.exact and alloc.revenue == 8 * 2.5 + 1.0
