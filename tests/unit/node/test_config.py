from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.config import ConfigError, load_config

EXAMPLE = Path(__file__).parents[3] / "config" / "node.example.toml"


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.node.id == "node-1"
    assert cfg.agents[0].cls == "broker_agents.samples:EchoAgent"
    assert cfg.agents[0].count == 2


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BA_NODE__ID", "from-env")
    monkeypatch.setenv("BA_NATS__SERVERS", '["nats://10.0.0.1:4222"]')
    cfg = load_config(EXAMPLE)
    assert cfg.node.id == "from-env"
    assert cfg.nats.servers == ["nats://10.0.0.1:4222"]


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[http]\nport = "eighty"\n[[agents]]\nclass = "nocolon"\ncount = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "http.port" in text
    assert "agents.0.class" in text and "package.module:ClassName" in text
    assert "agents.0.count" in text


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[node]\nshutdown_timout = 3\n")
    with pytest.raises(ConfigError, match=r"node\.shutdown_timout"):
        load_config(path)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[node\nid = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_cli_prints_field_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[supervisor]\nstrategy = \"one_for_some\"\n")
    result = CliRunner().invoke(app, ["node", "run", "--config", str(path)])
    assert result.exit_code == 2
    assert "supervisor.strategy" in result.output
    assert "Traceback" not in result.output
