"""The compose stack's secured set-up (docker/auth-init.sh, the commands the README gives
for real machines): it makes configs nats-server accepts, listening on every address only
with TLS and authentication, and running it again keeps every key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.embedded import binary_version, find_binary

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "docker" / "auth-init.sh"
CLUSTER_SAFE = (2, 10)  # sync_interval, and the compose image's version


def run_init(auth: Path) -> None:
    cli = f"{sys.executable} -m node.cli"
    subprocess.run(["sh", str(SCRIPT)], env={**os.environ, "AUTH": str(auth), "BA": cli},
                   cwd=REPO, check=True, capture_output=True, timeout=120)


def secrets_of(auth: Path) -> dict[str, bytes]:
    return {str(p.relative_to(auth)): p.read_bytes() for p in sorted(auth.rglob("*"))
            if p.is_file() and (p.suffix in (".nk", ".creds") or p.name.endswith("-key.pem"))}


def test_the_compose_auth_init_writes_valid_secured_configs_once(tmp_path: Path) -> None:
    binary = find_binary(CLUSTER_SAFE)
    if binary_version(binary)[:2] < CLUSTER_SAFE:
        pytest.skip("needs nats-server >= 2.10 (the chaos extra installs one)")
    auth = tmp_path / "auth"
    run_init(auth)
    keys = secrets_of(auth)
    assert {f"creds/node-{i}.creds" for i in (1, 2, 3)} <= set(keys)
    configs = sorted((auth / "servers").glob("*.conf"))
    assert [c.name for c in configs] == ["ba-1.conf", "ba-2.conf", "ba-3.conf"]
    for config in configs:
        checked = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        text = config.read_text()
        assert 'listen: "0.0.0.0:4222"' in text and 'http: "127.0.0.1:8222"' in text
        assert "resolver: MEMORY" in text and text.count("tls {") == 2  # clients, routes
        assert "authorization {" in text and "verify: true" in text
        assert 'sync_interval: "always"' in text
    run_init(auth)  # the second `docker compose up`
    assert secrets_of(auth) == keys
