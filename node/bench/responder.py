"""``python -m node.bench.responder URL SUBJECT N``: N plain nats-py
responders on SUBJECT (the raw fan-out baseline of the benchmarks). Prints "ready"."""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.aio.msg import Msg


async def main(url: str, subject: str, count: int) -> None:
    nc = await nats.connect(url)
    answer = b"\x81\xa4bids\x90"  # msgpack {"bids": []}: about the size of a bid answer

    async def respond(msg: Msg) -> None:
        await nc.publish(msg.reply, answer)

    for _ in range(count):
        await nc.subscribe(subject, cb=respond)
    await nc.flush()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
