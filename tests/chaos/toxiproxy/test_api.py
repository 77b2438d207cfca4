"""Pin our HTTP API to the documented Toxiproxy one: toxiproxy-python client and raw HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.toxiproxy import ThreadedToxiproxy, ToxiproxyClient, toxiproxy_client
from node.embedded import free_port
from tests.chaos.toxiproxy.sockets import connect, recv_exactly


@pytest.fixture
def tp(toxi: ToxiproxyClient) -> Toxiproxy:
    """The stock toxiproxy-python client pointed at our server."""
    client = Toxiproxy()
    client.update_api_consumer(toxi.host, toxi.port)
    return client


def test_create_list_get_delete_through_the_python_client(tp: Toxiproxy, echo_addr: str) -> None:
    proxy = tp.create(upstream=echo_addr, name="echo")
    assert proxy.name == "echo" and proxy.upstream == echo_addr and proxy.enabled is True
    assert not proxy.listen.endswith(":0"), "port 0 must be replaced by the bound port"
    assert set(tp.proxies()) == {"echo"}
    assert tp.get_proxy("echo").listen == proxy.listen
    with connect(proxy.listen) as sock:
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
    assert tp.destroy(proxy) is True
    assert tp.proxies() == {}


def test_duplicate_proxy_name_is_409(toxi: ToxiproxyClient, echo_addr: str) -> None:
    body = {"name": "dup", "upstream": echo_addr, "listen": "127.0.0.1:0"}
    first = requests.post(f"{toxi.url}/proxies", json=body, timeout=5)
    assert first.status_code == 201
    assert first.json()["toxics"] == []
    second = requests.post(f"{toxi.url}/proxies", json=body, timeout=5)
    assert second.status_code == 409
    assert second.json() == {"error": "proxy already exists", "status": 409}


def test_python_client_raises_proxy_exists_on_duplicate(tp: Toxiproxy, echo_addr: str) -> None:
    tp.create(upstream=echo_addr, name="x")
    with pytest.raises(ProxyExists):
        tp.create(upstream=echo_addr, name="x")


def test_missing_proxy_is_404_everywhere(toxi: ToxiproxyClient) -> None:
    for method, path in [("GET", "/proxies/nope"), ("POST", "/proxies/nope"),
                         ("DELETE", "/proxies/nope"), ("GET", "/proxies/nope/toxics"),
                         ("POST", "/proxies/nope/toxics"), ("GET", "/proxies/nope/toxics/t")]:
        resp = requests.request(method, toxi.url + path, json={}, timeout=5)
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"error": "proxy not found", "status": 404}


def test_missing_toxic_is_404(toxi: ToxiproxyClient, echo_addr: str) -> None:
    toxi.create("p", echo_addr)
    for method in ("GET", "POST", "DELETE"):
        resp = requests.request(method, f"{toxi.url}/proxies/p/toxics/none", json={}, timeout=5)
        assert resp.status_code == 404
        assert resp.json()["error"] == "toxic not found"


def test_missing_fields_and_bad_bodies_are_400(toxi: ToxiproxyClient, echo_addr: str) -> None:
    resp = requests.post(f"{toxi.url}/proxies", json={"name": "a"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"] == "missing required field: upstream"
    resp = requests.post(f"{toxi.url}/proxies", data=b"{not json", timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("bad request body")


def test_invalid_toxic_type_and_stream_are_400(toxi: ToxiproxyClient, tp: Toxiproxy,
                                               echo_addr: str) -> None:
    toxi.create("p", echo_addr)
    resp = requests.post(f"{toxi.url}/proxies/p/toxics", json={"type": "nope"}, timeout=5)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid toxic type")
    resp = requests.post(f"{toxi.url}/proxies/p/toxics",
                         json={"type": "latency", "stream": "sideways"}, timeout=5)
    assert resp.status_code == 400
    assert "stream was invalid" in resp.json()["error"]
    with pytest.raises(InvalidToxic):
        tp.get_proxy("p").add_toxic(type="bogus")


def test_toxic_defaults_duplicate_and_crud(toxi: ToxiproxyClient, tp: Toxiproxy,
                                           echo_addr: str) -> None:
    toxi.create("p", echo_addr)
    resp = requests.post(f"{toxi.url}/proxies/p/toxics",
                         json={"type": "latency", "attributes": {"latency": 5}}, timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"name": "latency_downstream", "type": "latency",
                           "stream": "downstream", "toxicity": 1.0,
                           "attributes": {"latency": 5, "jitter": 0}}
    dup = requests.post(f"{toxi.url}/proxies/p/toxics", json={"type": "latency"}, timeout=5)
    assert dup.status_code == 409 and dup.json()["error"] == "toxic already exists"
    updated = toxi.update_toxic("p", "latency_downstream", jitter=3)
    assert updated["attributes"] == {"latency": 5, "jitter": 3}
    got = requests.get(f"{toxi.url}/proxies/p/toxics/latency_downstream", timeout=5).json()
    assert got["attributes"]["jitter"] == 3
    toxics = tp.get_proxy("p").toxics()
    assert set(toxics) == {"latency_downstream"}
    assert toxics["latency_downstream"].attributes == {"latency": 5, "jitter": 3}
    assert requests.get(f"{toxi.url}/proxies/p", timeout=5).json()["toxics"][0]["name"] == (
        "latency_downstream")
    assert tp.get_proxy("p").destroy_toxic("latency_downstream") is True
    assert toxi.toxics("p") == []
    with pytest.raises(NotFound):
        tp.get_proxy("p").destroy_toxic("latency_downstream")


def test_disable_closes_live_connections_and_refuses_new_ones(tp: Toxiproxy,
                                                              echo_addr: str) -> None:
    proxy = tp.create(upstream=echo_addr, name="p")
    sock = connect(proxy.listen)
    sock.sendall(b"a")
    assert recv_exactly(sock, 1) == b"a"
    proxy.disable()
    assert tp.get_proxy("p").enabled is False
    try:
        assert sock.recv(1) == b""  # existing connection dropped
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen)
    proxy.enable()
    with connect(proxy.listen) as again:
        again.sendall(b"b")
        assert recv_exactly(again, 1) == b"b"


def test_update_changes_upstream_and_keeps_listen(toxi: ToxiproxyClient, echo_addr: str) -> None:
    created = toxi.create("p", "127.0.0.1:1")
    resp = requests.post(f"{toxi.url}/proxies/p", json={"upstream": echo_addr}, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["upstream"] == echo_addr and resp.json()["listen"] == created["listen"]
    with connect(created["listen"]) as sock:
        sock.sendall(b"z")
        assert recv_exactly(sock, 1) == b"z"


def test_reset_reenables_proxies_and_removes_toxics(toxi: ToxiproxyClient, tp: Toxiproxy,
                                                    echo_addr: str) -> None:
    toxi.create("a", echo_addr)
    toxi.create("b", echo_addr)
    toxi.add_toxic("a", "latency", latency=100)
    toxi.set_enabled("b", False)
    assert requests.post(f"{toxi.url}/reset", timeout=5).status_code == 204
    proxies = requests.get(f"{toxi.url}/proxies", timeout=5).json()
    assert proxies["a"]["toxics"] == [] and proxies["b"]["enabled"] is True


def test_populate_creates_is_idempotent_and_replaces_changed(toxi: ToxiproxyClient,
                                                             echo_addr: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    body = [{"name": "one", "listen": listen, "upstream": echo_addr}]
    resp = requests.post(f"{toxi.url}/populate", json=body, timeout=5)
    assert resp.status_code == 201
    assert [p["name"] for p in resp.json()["proxies"]] == ["one"]
    toxi.add_toxic("one", "latency", latency=1)
    again = requests.post(f"{toxi.url}/populate", json=body, timeout=5).json()["proxies"]
    assert again[0]["toxics"], "an unchanged proxy is left untouched"
    body[0]["upstream"] = "127.0.0.1:1"
    replaced = requests.post(f"{toxi.url}/populate", json=body, timeout=5).json()["proxies"]
    assert replaced[0]["upstream"] == "127.0.0.1:1" and replaced[0]["toxics"] == []
    bad = requests.post(f"{toxi.url}/populate", json={"not": "a list"}, timeout=5)
    assert bad.status_code == 400


def test_version_is_json(toxi: ToxiproxyClient) -> None:
    resp = requests.get(f"{toxi.url}/version", timeout=5)
    assert resp.status_code == 200 and resp.json()["version"].startswith("2.")


def test_patch_is_accepted_for_updates(toxi: ToxiproxyClient, echo_addr: str) -> None:
    toxi.create("p", echo_addr)
    resp = requests.patch(f"{toxi.url}/proxies/p", json={"enabled": False}, timeout=5)
    assert resp.status_code == 200 and resp.json()["enabled"] is False


def test_env_url_selects_that_server_instead_of_starting_one(
        monkeypatch: pytest.MonkeyPatch, toxi_server: ThreadedToxiproxy) -> None:
    monkeypatch.setenv("TOXIPROXY_URL", toxi_server.url)
    with toxiproxy_client() as client:
        assert client.url == toxi_server.url
        client.create("via-env", "127.0.0.1:1")
    assert "via-env" in ToxiproxyClient(toxi_server.url).proxies()


def test_without_env_an_in_process_server_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    with toxiproxy_client() as client:
        assert client.version().startswith("2.")
        url = client.url
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/version", timeout=2)


def test_module_runs_as_a_server_process() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.toxiproxy", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, cwd=os.getcwd(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f":{port}" in line
        assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).status_code == 200
    finally:
        proc.terminate()
        started = time.monotonic()
        proc.wait(10)
        assert time.monotonic() - started < 10
