"""``auth = "none"``: the embedded server runs open, for experiments, and the node says so
at WARNING (what is turned off) and in ``ba_nats_insecure``; the default does neither."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import pytest
from prometheus_client import REGISTRY

from node.config import load_config
from node.nats_access import TURNED_OFF, open_access


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))


def insecure_gauge() -> float | None:
    return REGISTRY.get_sample_value("ba_nats_insecure")


@pytest.mark.parametrize("auth", ["none", "local"])
async def test_only_auth_none_runs_open_and_says_loudly_what_it_turns_off(
        tmp_path: Path, auth: str) -> None:
    config = load_config(None, node={"data_dir": tmp_path}, nats={
        "auth": auth, "embedded": {"port": 0}})
    log = Log()
    access = await open_access(config, log)  # type: ignore[arg-type]
    assert access.embedded is not None
    try:
        warnings = [fields for level, _, fields in log.lines if level == "warning"]
        if auth == "none":
            assert [w["turned_off"] for w in warnings] == [list(TURNED_OFF)]
            assert insecure_gauge() == 1.0
            nc = await nats.connect(access.servers[0], allow_reconnect=False)  # anyone
            await nc.close()
            assert not (tmp_path / "auth").exists()
        else:
            assert warnings == [] and insecure_gauge() == 0.0
            assert access.servers[0].startswith("tls://")
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(access.servers[0], allow_reconnect=False,
                                   tls=access.security.tls_context())
    finally:
        access.embedded.stop()
