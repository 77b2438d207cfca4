"""The provisioned Grafana dashboards (docker/grafana/dashboards) hold together: each is
JSON with a unique uid and a title, its panels have unique ids, a place on the 24-column
grid that overlaps no other, the provisioned Prometheus datasource and targets with an
expression; every expression parses as PromQL (``promtool check rules`` on them as
recording rules; skipped where promtool is absent). Which metrics they chart is checked by
test_docker.py (our metrics exist in the code, NATS ones are the exporter's)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_docker import dashboards, provisioned

EXPECTED = {"cluster", "consensus", "auctions-money", "coordination", "nats"}
GRID_COLUMNS = 24


def loaded() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in dashboards()}


def test_the_five_dashboards_of_the_issue_are_provisioned() -> None:
    assert set(loaded()) == EXPECTED


def test_dashboards_have_unique_uids_and_titles() -> None:
    boards = list(loaded().values())
    uids = [b["uid"] for b in boards]
    titles = [b["title"] for b in boards]
    assert all(uids) and all(titles)
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit


def cells(grid: dict[str, int]) -> set[tuple[int, int]]:
    return {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])}


def test_panels_have_ids_places_datasources_and_targets() -> None:
    (source,) = provisioned("datasources")
    for name, board in loaded().items():
        panels = board["panels"]
        assert panels, name
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        taken: set[tuple[int, int]] = set()
        for panel in panels:
            where = f"{name}/{panel.get('title')}"
            assert panel["title"] and panel["type"] in {"timeseries", "stat"}, where
            grid = panel["gridPos"]
            assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
            assert grid["x"] + grid["w"] <= GRID_COLUMNS, where
            assert not cells(grid) & taken, f"{where} overlaps another panel"
            taken |= cells(grid)
            assert panel["datasource"]["uid"] == source["uid"], where
            targets = panel["targets"]
            assert targets, where
            refs = [t["refId"] for t in targets]
            assert len(set(refs)) == len(refs), where
            for target in targets:
                assert target["datasource"]["uid"] == source["uid"], where
                assert target["expr"].strip(), where


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    records = [{"record": f"check:{name.replace('-', '_')}:{panel['id']}_{target['refId']}",
                "expr": target["expr"]}
               for name, board in loaded().items() for panel in board["panels"]
               for target in panel["targets"]]
    rules = tmp_path / "dashboards.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(records)} rules found" in checked.stdout


def test_a_broken_expression_would_be_caught(tmp_path: Path) -> None:
    """The PromQL check is not vacuous."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    rules = tmp_path / "bad.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "check:bad", "expr": "sum by (le (rate(x[5m])"}]}]}))
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode != 0
