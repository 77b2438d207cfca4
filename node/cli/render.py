"""Rich rendering of coordination results for ``broker-agents request``.

Generic on purpose (any protocol's result is a JSON object): scalars and small maps go in
a field/value table, lists of records become their own tables, and a hierarchical result
becomes a tree of levels and clusters, so the work behind a decision is visible.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.tree import Tree


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _records_table(title: str, rows: list[dict[str, Any]]) -> Table:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def _tree(levels: list[dict[str, Any]]) -> Tree:
    tree = Tree("hierarchy (bottom level first)")
    for level in levels:
        branch = tree.add(f"level {level['level']}")
        for c in level["clusters"]:
            node = branch.add(f"{c['cluster_id']}: decision={_cell(c['decision'])} "
                              f"delegate={_cell(c['delegate'])}")
            answers = {a["participant"]: a for a in c["result"]["answers"]}
            for m in c["members"]:
                a = answers.get(m, {})
                node.add(f"{m}: {a.get('choice') or a.get('status', '?')}")
    return tree


def renderables(result: dict[str, Any], title: str) -> list[RenderableType]:
    out: list[RenderableType] = []
    summary = Table(title=title)
    summary.add_column("field")
    summary.add_column("value")
    nested: list[RenderableType] = []
    for key, value in result.items():
        if key == "levels" and isinstance(value, list):
            nested.append(_tree(value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.append(_records_table(key, value))
        elif key == "result" and isinstance(value, dict):
            nested.extend(renderables(value, "result"))
        else:
            summary.add_row(key, _cell(value))
    out.append(summary)
    out.extend(nested)
    return out


def print_result(console: Console, protocol: str, result: dict[str, Any]) -> None:
    console.print(Group(*renderables(result, f"{protocol} result")))
