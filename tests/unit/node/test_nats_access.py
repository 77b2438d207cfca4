"""Who a node and a command are on NATS: the [nats] modes, the identity a config names,
and the context a command finds for the role it needs (files only, no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker_agents.transport import Security
from node.auth.context import ClientContext, context_name
from node.auth.local import LocalAuth, ensure_local
from node.auth.roles import Role
from node.cli.common import Target
from node.config import ConfigError, load_config
from node.nats_access import configured_security


@pytest.fixture
def local(tmp_path: Path) -> LocalAuth:
    return ensure_local(tmp_path / "data", port=14222)


def nats(**section: Any) -> Any:
    return load_config(None, nats=section).nats


def test_the_embedded_server_is_local_by_default_and_servers_mean_creds() -> None:
    assert nats().mode == "local"
    assert nats(servers=["tls://h:4222"]).mode == "creds"
    assert nats(context="/x/context.json").mode == "creds"
    assert nats(auth="none").mode == "none"


@pytest.mark.parametrize(("section", "says"), [
    ({"auth": "local", "servers": ["tls://h:4222"]}, "auth = 'local' runs the embedded"),
    ({"creds": "n.creds"}, "uses the data dir's own creds"),
    ({"auth": "none", "servers": ["nats://h:4222"], "creds": "n.creds"}, "creds are set"),
    ({"servers": ["tls://h:4222"], "tls_ca": "ca.pem", "tls": {"ca_file": "ca.pem"}},
     "give the CA once"),
])
def test_contradictory_nats_settings_are_refused_naming_why(section: dict[str, Any],
                                                            says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        nats(**section)


def test_creds_file_is_still_accepted_as_creds() -> None:
    assert nats(servers=["tls://h:4222"], creds_file="n.creds").creds == Path("n.creds")


def test_a_node_with_creds_uses_the_inbox_prefix_of_their_user(local: LocalAuth) -> None:
    servers, security = configured_security(nats(
        servers=["tls://h:4222"], creds=str(local.creds[Role.NODE]), tls_ca=str(local.ca)))
    assert servers == ["tls://h:4222"]
    assert security == Security(creds_file=local.creds[Role.NODE], tls_ca_file=local.ca,
                                inbox_prefix="_INBOX.node")


def test_a_node_with_a_context_takes_its_servers_and_identity(local: LocalAuth) -> None:
    servers, security = configured_security(nats(context=str(local.contexts[Role.NODE])))
    assert servers == ["tls://127.0.0.1:14222"]
    assert security == local.security(Role.NODE)
    _, other = configured_security(nats(context=str(local.contexts[Role.NODE]),
                                        creds=str(local.creds[Role.ADMIN])))
    assert (other.creds_file, other.inbox_prefix) == (local.creds[Role.ADMIN], "_INBOX.admin")


def test_a_command_finds_the_context_of_the_role_it_needs(
        local: LocalAuth, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # ./data is the node's data dir
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-here"))
    for name in ("BA_CONTEXT", "BA_NODE__DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for role in (Role.CLIENT, Role.OBSERVER, Role.NODE):
        servers, security, found = Target().resolve(role)
        assert found is not None
        assert found.resolve() == (tmp_path / "data" / "auth" / context_name(role)).resolve()
        assert security == local.security(role) and servers == ["tls://127.0.0.1:14222"]
    # an explicit context is who the command is, whatever the role it would take
    _, security, _ = Target(context=local.contexts[Role.CLIENT]).resolve(Role.NODE)
    assert security.creds_file == local.creds[Role.CLIENT]
    # --creds replaces the context's creds and brings its user's inbox prefix
    servers, security, _ = Target("tls://h:1,tls://h:2",
                                  creds=local.creds[Role.ADMIN]).resolve(Role.CLIENT)
    assert servers == ["tls://h:1", "tls://h:2"]
    assert (security.creds_file, security.tls_ca_file, security.inbox_prefix) == (
        local.creds[Role.ADMIN], local.ca, "_INBOX.admin")


def test_without_any_context_a_command_connects_anonymously_to_the_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-here"))
    for name in ("BA_CONTEXT", "BA_NODE__DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    servers, security, found = Target().resolve(Role.CLIENT)
    assert (servers, security, found) == (["nats://127.0.0.1:4222"], Security(), None)
    assert security.anonymous and ClientContext(("x",)).security().anonymous


def test_raft_members_may_not_be_named_like_client_verbs() -> None:
    for verb in ("propose", "read"):
        with pytest.raises(ConfigError, match="reserved"):
            load_config(None, services={"consensus": {"groups": [
                {"name": "g", "members": ["a", verb]}]}})
