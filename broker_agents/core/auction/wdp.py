"""Winner determination for combinatorial auctions: which bundle bids win.

Exact algorithm: dynamic programming over the set of items already allocated. Bids are
processed from the latest to the earliest; the table maps "exactly these items are used" to
the best (revenue, then earliest bids) allocation, plus how many allocations reach that
revenue. The table has at most ``2^items`` entries (in practice far fewer: only unions of
bundles appear) and each bid scans it once, so the work is at most ``bids * 2^items``.
The result is exact whenever that work stays within ``work_limit`` (default 2,000,000 table
visits, about 1-2 s of CPython): always for up to 12 items with up to 480 bids, and often
for much larger instances whose bundles overlap little.

Beyond the limit it stops being exact and falls back to the greedy rule of Lehmann,
O'Callaghan and Shoham: take bids in order of ``amount / sqrt(|bundle|)`` if they do not
conflict. That allocation is feasible and earns at least ``1/sqrt(items)`` of the optimum;
the result then says ``exact=False``.

Ties between allocations of equal revenue go to the one whose sorted acceptance numbers
are lexicographically smallest (the earliest accepted bid wins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from broker_agents.core.auction.common import EPSILON


@dataclass(frozen=True)
class BundleBid:
    """Input: one bid, with its acceptance number used for tie-breaking."""

    seq: int
    bidder: str
    items: frozenset[str]
    amount: float


@dataclass(frozen=True)
class Allocation:
    """Output: winning bids (by acceptance number, ascending) and their total."""

    seqs: tuple[int, ...]
    revenue: float
    exact: bool
    tie_broken: bool


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= EPSILON * max(1.0, abs(a), abs(b))


def solve(bids: Sequence[BundleBid], work_limit: int = 2_000_000) -> Allocation:
    """The revenue-maximising set of non-overlapping bids."""
    exact = _dp(bids, work_limit)
    return exact if exact is not None else _greedy(bids)


def _dp(bids: Sequence[BundleBid], work_limit: int) -> Allocation | None:
    names = sorted({item for b in bids for item in b.items})
    bit = {name: 1 << i for i, name in enumerate(names)}
    # mask -> (revenue, chosen seqs ascending, number of allocations with that revenue)
    table: dict[int, tuple[float, tuple[int, ...], int]] = {0: (0.0, (), 1)}
    work = 0
    for bid in sorted(bids, key=lambda b: b.seq, reverse=True):
        if not bid.items:
            continue
        mask = 0
        for item in bid.items:
            mask |= bit[item]
        work += len(table)
        if work > work_limit:
            return None
        for used, (revenue, seqs, count) in list(table.items()):
            if used & mask:
                continue
            cand = (revenue + bid.amount, (bid.seq, *seqs), count)
            table[used | mask] = _merge(table.get(used | mask), cand)
    best: tuple[float, tuple[int, ...], int] = (0.0, (), 1)
    ties = 0
    for entry in table.values():
        if _same(entry[0], best[0]):
            ties += entry[2]
            if entry[1] < best[1]:
                best = (best[0], entry[1], best[2])
        elif entry[0] > best[0]:
            best, ties = entry, entry[2]
    return Allocation(seqs=best[1], revenue=best[0], exact=True,
                      tie_broken=ties > 1 and bool(best[1]))


def _merge(
    old: tuple[float, tuple[int, ...], int] | None,
    cand: tuple[float, tuple[int, ...], int],
) -> tuple[float, tuple[int, ...], int]:
    if old is None:
        return cand
    if _same(old[0], cand[0]):
        seqs = min(old[1], cand[1])
        return (old[0] if seqs == old[1] else cand[0], seqs, old[2] + cand[2])
    return cand if cand[0] > old[0] else old


def _greedy(bids: Sequence[BundleBid]) -> Allocation:
    order = sorted(
        (b for b in bids if b.items),
        key=lambda b: (-b.amount / math.sqrt(len(b.items)), b.seq),
    )
    used: set[str] = set()
    chosen: list[int] = []
    revenue = 0.0
    for bid in order:
        if used.isdisjoint(bid.items):
            used |= bid.items
            chosen.append(bid.seq)
            revenue += bid.amount
    return Allocation(seqs=tuple(sorted(chosen)), revenue=revenue, exact=False,
                      tie_broken=False)
