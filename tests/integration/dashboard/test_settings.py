"""``broker-agents dashboard`` settings: flags over a node or playground config's
``[node] subject_prefix`` and ``[dashboard]``; a bad config is a config error (exit 2)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from node.cli import app
from node.config import load_config
from node.dashboard.server import DashboardSettings
from node.exitcodes import ExitCode


def test_defaults_are_local_and_read_only() -> None:
    settings = DashboardSettings()
    assert (settings.host, settings.port, settings.prefix) == ("127.0.0.1", 8765, "ba")


def test_a_config_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nsubject_prefix = "xy"\n[dashboard]\nenabled = true\n'
                    'host = "0.0.0.0"\nport = 9000\nprometheus_url = "http://p:9090"\n')
    settings = DashboardSettings.from_config_file(path, port=9100, host=None)
    assert (settings.host, settings.port, settings.prefix) == ("0.0.0.0", 9100, "xy")
    assert settings.prometheus_url == "http://p:9090"
    node = load_config(path)
    assert node.dashboard.enabled and node.node.status_interval_s == 2.0


def test_the_playground_config_is_accepted() -> None:
    root = Path(__file__).parents[3]
    settings = DashboardSettings.from_config_file(root / "config" / "playground.toml")
    assert settings.prefix == "ba" and settings.port == 8765


def test_a_bad_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dashboard]\nport = 'many'\n")
    result = CliRunner().invoke(app, ["dashboard", "--config", str(path)])
    assert result.exit_code == ExitCode.CONFIG, result.output
