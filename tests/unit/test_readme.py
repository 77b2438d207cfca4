"""The README shows a JSON Schema; it must be the one the code exports."""

import json
import re
from pathlib import Path

from broker_agents.coord.schema import schemas

README = Path(__file__).parents[2] / "README.md"


def test_readme_vote_schema_matches_the_exported_schema() -> None:
    text = README.read_text()
    block = re.search(r"<!-- schema:vote:request -->\s*```json\n(.*?)```", text, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == schemas()["vote"]["request"]
