"""``python -m chaos.toxiproxy --host 127.0.0.1 --port 8474``: serve until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal

from chaos.toxiproxy.server import ToxiproxyServer


async def _serve(host: str, port: int, seed: int | None) -> None:
    server = await ToxiproxyServer(host, port, seed).start()
    print(f"toxiproxy-compatible API listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.toxiproxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8474)
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity draws")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.seed))


if __name__ == "__main__":
    main()
