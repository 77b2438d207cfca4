"""The auth directory on disk: secure defaults made once and kept, certificates, server
configs and client contexts (no server here; see tests/integration/auth)."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from broker_agents.core.errors import BrokerError, ErrorCode
from node.auth import context
from node.auth.authority import Authority
from node.auth.context import ClientContext, connect_kwargs
from node.auth.creds import Creds
from node.auth.local import LocalAuth, ensure_local
from node.auth.roles import Role, permissions
from node.auth.server_config import ServerSpec, check_specs, render, write_configs
from node.auth.tls import CertKey, covers, issue_server_cert, new_ca


@pytest.fixture
def local(tmp_path: Path) -> LocalAuth:
    return ensure_local(tmp_path / "data", port=14222, http_port=18222)


def _contents(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_every_secret_is_private(local: LocalAuth) -> None:
    for path in [local.dir, *local.dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_second_start_keeps_everything(local: LocalAuth, tmp_path: Path) -> None:
    before = _contents(local.dir)
    again = ensure_local(tmp_path / "data", port=14222, http_port=18222)
    assert not again.created and local.created
    assert _contents(local.dir) == before


def test_local_users_hold_their_roles(local: LocalAuth) -> None:
    authority = Authority.load(local.dir)
    for role, path in local.creds.items():
        claims = Creds.read(path).claims()
        assert claims["iss"] == authority.account.public_key
        assert claims["name"] == role.value
        nats = claims["nats"]
        assert isinstance(nats, dict)
        assert nats["pub"] == permissions(role, role.value).claims()["pub"]


def test_creds_granting_other_permissions_are_reissued(local: LocalAuth) -> None:
    authority = Authority.load(local.dir)
    authority.issue(Role.NODE, "client")  # a client whose creds say "node"
    old = local.creds[Role.CLIENT].read_bytes()
    path = authority.ensure_user(Role.CLIENT, "client")
    assert path.read_bytes() != old
    claims = Creds.read(path).claims()["nats"]
    assert isinstance(claims, dict)
    assert claims["pub"] == permissions(Role.CLIENT, "client").claims()["pub"]
    kept = path.read_bytes()
    assert authority.ensure_user(Role.CLIENT, "client").read_bytes() == kept


def test_a_new_host_gets_a_new_certificate(local: LocalAuth) -> None:
    authority = Authority.load(local.dir)
    files = authority.ensure_server_cert("local", [])
    first = files.cert.read_bytes()
    ca = authority.ensure_ca()
    assert covers(CertKey.read(files.cert, files.key), ca, ["localhost", "127.0.0.1", "::1"])
    assert authority.ensure_server_cert("local", ["127.0.0.1"]).cert.read_bytes() == first
    again = authority.ensure_server_cert("local", ["nats.example.org", "10.0.0.7"])
    assert again.cert.read_bytes() != first
    assert covers(CertKey.read(again.cert, again.key), ca, ["nats.example.org", "10.0.0.7"])


def test_a_certificate_from_another_ca_is_not_kept() -> None:
    ca, other = new_ca(), new_ca()
    cert = issue_server_cert(other, "s", ["localhost"])
    assert covers(cert, other, ["localhost"]) and not covers(cert, ca, ["localhost"])
    assert not covers(issue_server_cert(ca, "s", ["localhost"]), ca, ["nats.example.org"])


def test_authority_refuses_to_replace_an_operator(local: LocalAuth) -> None:
    with pytest.raises(BrokerError) as err:
        Authority.create(local.dir)
    assert err.value.code is ErrorCode.ALREADY_EXISTS
    with pytest.raises(BrokerError) as missing:
        Authority.load(local.dir.parent / "nowhere")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_the_local_server_config(local: LocalAuth) -> None:
    text = local.server_config.read_text()
    authority = Authority.load(local.dir)
    assert f'system_account: "{authority.system.public_key}"' in text
    assert "resolver: MEMORY" in text
    for key, token in authority.preload().items():
        assert f'"{key}": "{token}"' in text
    assert 'listen: "127.0.0.1:14222"' in text and 'http: "127.0.0.1:18222"' in text
    assert "cluster {" not in text and "verify" not in text


def test_a_cluster_config_routes_to_its_peers_over_tls_with_a_secret(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "auth")
    specs = [ServerSpec(f"ba-{i}", f"h{i}.example.org") for i in (1, 2, 3)]
    paths = write_configs(authority, specs)
    password = authority.ensure_route_password()
    text = paths[0].read_text()
    assert 'server_name: "ba-1"' in text and 'listen: "0.0.0.0:6222"' in text
    assert f'"nats-route://route:{password}@h2.example.org:6222"' in text
    assert f'"nats-route://route:{password}@h3.example.org:6222"' in text
    assert "h1.example.org:6222" not in text
    assert "verify: true" in text and f'password: "{password}"' in text
    cert = CertKey.read(authority.dir / "tls" / "ba-1.pem", authority.dir / "tls" / "ba-1-key.pem")
    assert covers(cert, authority.ensure_ca(), ["h1.example.org", "localhost"])


def test_servers_on_one_host_need_their_own_ports(tmp_path: Path) -> None:
    with pytest.raises(BrokerError) as err:
        check_specs([ServerSpec("a", "h"), ServerSpec("b", "h", port=4223)])
    assert err.value.code is ErrorCode.VALIDATION and "h:6222" in err.value.message
    with pytest.raises(BrokerError):
        check_specs([ServerSpec("a", "h1"), ServerSpec("a", "h2")])
    check_specs([ServerSpec("a", "h", port=1, cluster_port=2, http_port=3),
                 ServerSpec("b", "h", port=4, cluster_port=5, http_port=None)])


def test_ipv6_hosts_are_bracketed(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "auth")
    files = authority.ensure_server_cert("s", ["::1"])
    text = render(ServerSpec("s", "::1", listen="::"), authority, files, tmp_path)
    assert 'listen: "[::]:4222"' in text
    assert ServerSpec("s", "::1").client_url == "tls://[::1]:4222"


# -- the client context ------------------------------------------------------------------


def test_a_context_round_trips_and_becomes_connect_kwargs(local: LocalAuth) -> None:
    ctx = ClientContext.read(local.context)
    assert ctx.servers == ("tls://127.0.0.1:14222",)
    assert ctx.creds == local.creds[Role.CLIENT] and ctx.ca == local.ca
    assert ctx.inbox_prefix == "_INBOX.client"
    kwargs = connect_kwargs(ctx)
    assert kwargs["user_credentials"] == str(local.creds[Role.CLIENT])
    assert kwargs["inbox_prefix"] == "_INBOX.client"
    assert isinstance(kwargs["tls"], ssl.SSLContext)
    assert kwargs["tls"].verify_mode is ssl.CERT_REQUIRED and kwargs["tls"].check_hostname


def test_relative_paths_in_a_context_are_the_files(tmp_path: Path) -> None:
    (tmp_path / "ctx.json").write_text('{"url": "tls://a:1, tls://b:2", "creds": "u.creds"}')
    ctx = ClientContext.read(tmp_path / "ctx.json")
    assert ctx.servers == ("tls://a:1", "tls://b:2") and ctx.creds == tmp_path / "u.creds"
    assert connect_kwargs(ctx) == {"servers": ["tls://a:1", "tls://b:2"],
                                   "user_credentials": str(tmp_path / "u.creds")}
    (tmp_path / "bad.json").write_text('{"creds": "u.creds"}')
    with pytest.raises(BrokerError) as err:
        ClientContext.read(tmp_path / "bad.json")
    assert err.value.code is ErrorCode.CONFIG


def test_where_a_context_is_found(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    env = {"HOME": str(home)}
    assert context.find(data_dir=data, env=env) is None
    in_data = ClientContext(("tls://d:1",)).write(data / "auth" / "context.json")
    assert context.find(data_dir=data, env=env) == in_data
    in_home = ClientContext(("tls://h:1",)).write(
        home / ".config" / "broker-agents" / "context.json")
    assert context.find(data_dir=data, env=env) == in_home
    xdg = ClientContext(("tls://x:1",)).write(tmp_path / "xdg" / "broker-agents" /
                                              "context.json")
    assert context.find(data_dir=data, env={**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
                        ) == xdg
    named = ClientContext(("tls://n:1",)).write(tmp_path / "named.json")
    assert context.find(data_dir=data, env={**env, "BA_CONTEXT": str(named)}) == named
    explicit = ClientContext(("tls://e:1",)).write(tmp_path / "explicit.json")
    assert context.find(explicit, data_dir=data, env={**env, "BA_CONTEXT": str(named)}
                        ) == explicit
    for missing in ({"BA_CONTEXT": str(tmp_path / "gone.json")}, {}):
        with pytest.raises(BrokerError) as err:  # a named context never falls back
            context.find(tmp_path / "gone.json" if not missing else None, data_dir=data,
                         env={**env, **missing})
        assert err.value.code is ErrorCode.CONFIG
