from pathlib import Path

from node.demo import run_demo


async def test_demo_exercises_every_step_and_stops_cleanly(tmp_path: Path) -> None:
    steps, codes = await run_demo(tmp_path)
    failed = [(s.what, s.outcome) for s in steps if not s.ok]
    assert failed == []
    assert len(steps) >= 10
    assert codes == {"node-1": 0, "node-2": 0, "node-3": 0}
