"""A Toxiproxy-API-compatible TCP fault proxy, and the client the chaos suite uses."""

from chaos.toxiproxy.client import ToxiproxyClient, toxiproxy_client
from chaos.toxiproxy.server import ThreadedToxiproxy, ToxiproxyServer

__all__ = ["ThreadedToxiproxy", "ToxiproxyClient", "ToxiproxyServer", "toxiproxy_client"]
