"""An ordered index of one numeric resource: a sorted list of (value, agent_id), bisected.

Range queries cost O(log n) to size and O(k) to read. Writes are buffered: a bulk load
of 50k agents paid a bisect and a memmove of the whole list per insert (two resources:
a third of its apply time), so adds and removes wait in a small pending set and are
merged when a read needs the list: one by one while few are pending, otherwise in one
sort (Timsort merges the long sorted run with the new ones in O(n + p log p)).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from broker_agents.core.registry.query import Op

Item = tuple[float, str]

# Up to this many pending changes are merged one by one (bisect + memmove each);
# more are merged in one sort.
MERGE_ONE_BY_ONE = 64


def _first(item: Item) -> float:
    return item[0]


class OrderedIndex:
    __slots__ = ("_added", "_items", "_removed")

    def __init__(self) -> None:
        self._items: list[Item] = []
        # Each (value, id) is in the index at most once, so a pending add and a pending
        # remove of the same item cancel out.
        self._added: dict[Item, None] = {}  # not yet in _items (insertion ordered)
        self._removed: set[Item] = set()  # still in _items

    def __len__(self) -> int:
        return len(self._items) + len(self._added) - len(self._removed)

    def add(self, value: float, agent_id: str) -> None:
        item = (float(value), agent_id)
        if item in self._removed:
            self._removed.discard(item)
        else:
            self._added[item] = None

    def remove(self, value: float, agent_id: str) -> None:
        item = (float(value), agent_id)
        if item in self._added:
            del self._added[item]
        else:
            self._removed.add(item)

    def _merged(self) -> list[Item]:
        """The sorted items, with the pending changes applied."""
        added, removed = self._added, self._removed
        if not added and not removed:
            return self._items
        items = self._items
        if len(added) + len(removed) <= MERGE_ONE_BY_ONE:
            for item in removed:
                pos = bisect_left(items, item)
                if pos < len(items) and items[pos] == item:
                    del items[pos]
            for item in added:
                insort(items, item)
        else:
            kept = [it for it in items if it not in removed] if removed else items
            kept.extend(added)
            kept.sort()
            self._items = items = kept
        added.clear()
        removed.clear()
        return items

    def bounds(self, op: Op, value: float) -> tuple[int, int]:
        """The slice ``[lo, hi)`` of items satisfying ``item op value``."""
        items = self._merged()
        if op is Op.GT:
            return bisect_right(items, value, key=_first), len(items)
        if op is Op.GTE:
            return bisect_left(items, value, key=_first), len(items)
        if op is Op.LT:
            return 0, bisect_left(items, value, key=_first)
        if op is Op.LTE:
            return 0, bisect_right(items, value, key=_first)
        if op is Op.EQ:
            return (bisect_left(items, value, key=_first),
                    bisect_right(items, value, key=_first))
        raise ValueError(f"ordered index cannot answer {op.value}")

    def ids(self, lo: int, hi: int) -> set[str]:
        """Ids in the slice ``[lo, hi)`` of the list ``bounds`` just sized."""
        return {agent_id for _, agent_id in self._merged()[lo:hi]}

    def items(self) -> list[Item]:
        return list(self._merged())
