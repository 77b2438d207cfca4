"""What the README shows is what the code has: the vote schema, the greeter, the playground."""

import json
import re
import sys
from pathlib import Path

import pytest

from broker_agents.coord.schema import schemas
from node.cli.up import check_config
from node.cluster import split_agents
from node.config import ConfigError

README = Path(__file__).parents[2] / "README.md"


def test_readme_vote_schema_matches_the_exported_schema() -> None:
    text = README.read_text()
    block = re.search(r"<!-- schema:vote:request -->\s*```json\n(.*?)```", text, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == schemas()["vote"]["request"]


def test_readme_greeter_is_the_example_file() -> None:
    """The "Writing an agent" code is examples/greeter.py, which the playground hosts."""
    block = re.search(r"<!-- file:examples/greeter.py -->\s*```python\n(.*?)```",
                      README.read_text(), re.S)
    assert block is not None
    assert block.group(1) == (README.parent / "examples" / "greeter.py").read_text()


def test_playground_spreads_its_agents_over_three_nodes() -> None:
    per_node = split_agents(README.parent / "config" / "playground.toml", 3)
    ids = [a["id"] for node in per_node for a in node]
    assert len(ids) == len(set(ids))
    assert all(node for node in per_node)
    assert all("node" not in a for node in per_node for a in node)  # `up`'s key, taken out
    engines = [[a["id"] for a in node if a["class"].endswith(":AdaptationEngineAgent")]
               for node in per_node]
    assert all(len(e) == 1 for e in engines)  # one on each variables member


def test_split_agents_defaults_to_node_1_and_refuses_an_unknown_node(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[agents]]\nclass = "a:B"\nid = "x"\n'
                      '[[agents]]\nclass = "a:B"\nid = "y"\nnode = "node-2"\n')
    assert split_agents(config, 2) == [[{"class": "a:B", "id": "x"}],
                                       [{"class": "a:B", "id": "y"}]]
    with pytest.raises(ConfigError, match=r"agents.1.node: 'node-2' is not one of"):
        split_agents(config, 1)


def test_up_checks_the_playground_and_names_a_class_that_does_not_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` refuses a file its nodes could not run before starting any process."""
    monkeypatch.chdir(README.parent)  # where the README says to start it
    monkeypatch.setattr(sys, "path", list(sys.path))  # check_config puts the cwd on it
    playground = README.parent / "config" / "playground.toml"
    check_config(playground, 3)
    bad = tmp_path / "bad.toml"
    bad.write_text(playground.read_text().replace("examples.greeter:", "mypkg.greeter:"))
    with pytest.raises(ConfigError, match=r"agents.4.class: cannot import module 'mypkg"):
        check_config(bad, 3)
    twice = tmp_path / "twice.toml"
    twice.write_text(playground.read_text().replace('id = "echo-2"', 'id = "echo-1"'))
    with pytest.raises(ConfigError, match=r"duplicate agent id 'echo-1'"):
        check_config(twice, 3)
