"""Faults made with proxies (the Toxiproxy API): links taken down, toxics added.

The loopback network cuts with these; the netns network uses them for what nft cannot do
here (latency and bandwidth: the kernel has no netem) on the links it proxies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaos.toxiproxy.client import ToxiproxyClient


@dataclass
class DisableProxies:
    """Take proxies down: live connections drop, new ones are refused (a clean cut)."""

    toxi: ToxiproxyClient
    proxies: list[str]
    kind: str = "disable"
    target: str = ""

    def inject(self) -> None:
        for name in self.proxies:
            self.toxi.set_enabled(name, False)

    def heal(self) -> None:
        for name in self.proxies:
            self.toxi.set_enabled(name, True)


@dataclass
class ToxicSpec:
    proxy: str
    type: str
    stream: str
    attributes: dict[str, int]


@dataclass
class ToxicFault:
    """Add toxics (named after the fault, so heals remove exactly these) to proxies."""

    toxi: ToxiproxyClient
    toxics: list[ToxicSpec]
    kind: str = "toxic"
    target: str = ""
    name: str = "chaos"

    def _name(self, spec: ToxicSpec) -> str:
        return f"{self.name}_{spec.type}_{spec.stream}"

    def inject(self) -> None:
        for spec in self.toxics:
            self.toxi.add_toxic(spec.proxy, spec.type, stream=spec.stream,
                                name=self._name(spec), **spec.attributes)

    def heal(self) -> None:
        for spec in self.toxics:
            self.toxi.remove_toxic(spec.proxy, self._name(spec))


def slow_links(toxi: ToxiproxyClient, proxies: Sequence[str], latency_ms: int,
               jitter_ms: int = 0) -> ToxicFault:
    """Latency (and jitter) on both directions of the given proxies."""
    attrs = {"latency": latency_ms, "jitter": jitter_ms}
    specs = [ToxicSpec(p, "latency", s, attrs) for p in proxies
             for s in ("upstream", "downstream")]
    return ToxicFault(toxi, specs, kind="latency", target=",".join(proxies), name="slow")


def bandwidth(toxi: ToxiproxyClient, proxies: Sequence[str], rate_kb: int) -> ToxicFault:
    specs = [ToxicSpec(p, "bandwidth", s, {"rate": rate_kb}) for p in proxies
             for s in ("upstream", "downstream")]
    return ToxicFault(toxi, specs, kind="bandwidth", target=",".join(proxies), name="narrow")
