"""An ordered index of one numeric resource: a sorted list of (value, agent_id), bisected.

Range queries cost O(log n) to size and O(k) to read; inserts and removals are a
bisect plus a list memmove, which is cheap at registry sizes (tens of thousands).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from broker_agents.core.registry.query import Op


def _first(item: tuple[float, str]) -> float:
    return item[0]


class OrderedIndex:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: float, agent_id: str) -> None:
        insort(self._items, (float(value), agent_id))

    def remove(self, value: float, agent_id: str) -> None:
        item = (float(value), agent_id)
        pos = bisect_left(self._items, item)
        if pos < len(self._items) and self._items[pos] == item:
            del self._items[pos]

    def bounds(self, op: Op, value: float) -> tuple[int, int]:
        """The slice ``[lo, hi)`` of items satisfying ``item op value``."""
        items = self._items
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
        return {agent_id for _, agent_id in self._items[lo:hi]}

    def items(self) -> list[tuple[float, str]]:
        return list(self._items)
