"""The client the chaos suite drives Toxiproxy with, and how it picks the server.

We go through the ``toxiproxy-python`` client wherever it has the call, and add the few
documented endpoints it lacks (show a proxy, update a toxic, populate) over HTTP. With
``TOXIPROXY_URL`` set, the suite talks to that (real) Toxiproxy; otherwise it starts our
compatible server in-process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import requests
from toxiproxy import Toxiproxy
from toxiproxy.api import validate_response

from chaos.toxiproxy.server import ThreadedToxiproxy

ENV_URL = "TOXIPROXY_URL"


class ToxiproxyClient:
    """Thin, typed facade over toxiproxy-python bound to one server URL."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 8474
        self.url = f"http://{self.host}:{self.port}"
        self.tp = Toxiproxy()
        self._bind()

    def _bind(self) -> None:
        # toxiproxy-python keeps host/port on a class; re-bind before every call.
        self.tp.update_api_consumer(self.host, self.port)

    def _http(self, method: str, path: str, body: Any = None) -> Any:
        resp = validate_response(requests.request(method, self.url + path, json=body,
                                                  timeout=10))
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def version(self) -> str:
        """The server's version (JSON ``{"version": ..}`` since 2.x, plain text before)."""
        resp = requests.get(self.url + "/version", timeout=10)
        resp.raise_for_status()
        try:
            return str(resp.json()["version"])
        except (ValueError, KeyError, TypeError):
            return resp.text.strip()

    def create(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
               enabled: bool = True) -> dict[str, Any]:
        """Create a proxy; returns its JSON (``listen`` shows the bound port)."""
        self._bind()
        proxy = self.tp.create(upstream=upstream, name=name, listen=listen, enabled=enabled)
        return {"name": proxy.name, "listen": proxy.listen, "upstream": proxy.upstream,
                "enabled": proxy.enabled}

    def proxies(self) -> dict[str, Any]:
        self._bind()
        return self.tp.proxies()  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http("GET", f"/proxies/{name}")
        return result

    def delete(self, name: str) -> None:
        self._bind()
        proxy = self.tp.get_proxy(name)
        if proxy is not None:
            proxy.destroy()

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._bind()
        proxy = self.tp.get_proxy(name)
        if proxy is None:
            raise KeyError(name)
        if enabled:
            proxy.enable()
        else:
            proxy.disable()

    def add_toxic(self, proxy: str, type: str, stream: str = "downstream",
                  name: str | None = None, toxicity: float = 1.0,
                  **attributes: int) -> str:
        """Add a toxic; returns its name (Toxiproxy's default is ``<type>_<stream>``)."""
        self._bind()
        toxic_name = name or f"{type}_{stream}"
        target = self.tp.get_proxy(proxy)
        if target is None:
            raise KeyError(proxy)
        target.add_toxic(type=type, stream=stream, name=toxic_name, toxicity=toxicity,
                         attributes=attributes)
        return toxic_name

    def update_toxic(self, proxy: str, name: str, toxicity: float | None = None,
                     **attributes: int) -> dict[str, Any]:
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        result: dict[str, Any] = self._http("POST", f"/proxies/{proxy}/toxics/{name}", body)
        return result

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._bind()
        target = self.tp.get_proxy(proxy)
        if target is not None and target.get_toxic(name) is not None:
            target.destroy_toxic(name)

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._http("GET", f"/proxies/{proxy}/toxics")
        return result

    def populate(self, proxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: dict[str, Any] = self._http("POST", "/populate", proxies)
        return list(result["proxies"])

    def reset(self) -> None:
        self._bind()
        self.tp.reset()


@contextmanager
def toxiproxy_client(url: str | None = None) -> Iterator[ToxiproxyClient]:
    """The client to use: ``url``, else ``$TOXIPROXY_URL``, else an in-process server."""
    url = url or os.environ.get(ENV_URL)
    if url:
        yield ToxiproxyClient(url)
        return
    with ThreadedToxiproxy() as server:
        yield ToxiproxyClient(server.url)


__all__ = ["ENV_URL", "ToxiproxyClient", "toxiproxy_client"]
