"""``python -m node.bench.responder CONTEXT SUBJECT N [TOTAL]``: N plain nats-py
responders on SUBJECT (the raw fan-out baseline of the benchmarks), connected with the
client context file CONTEXT (a node's: servers, creds, CA). Prints "ready".

With TOTAL, this process also relays: a request on ``SUBJECT.relay`` is published once on
SUBJECT with a reply prefix of its own, and answered when TOTAL answers came back (one
wildcard reply subscription, as a gatherer has). That is the raw floor of anything with a
coordinator in the middle (client -> coordinator -> participants -> coordinator -> client):
two round trips, no decoding, no checks."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents.transport import connect_client
from node.auth.context import ClientContext


async def _relay(nc: NATS, subject: str, total: int) -> None:
    prefix = nc.new_inbox()
    waiting: dict[str, list[Any]] = {}  # token -> [answers so far, requester's reply]
    seq = itertools.count()

    async def on_answer(msg: Msg) -> None:
        entry = waiting.get(msg.subject.rsplit(".", 1)[-1])
        if entry is not None:
            entry[0] += 1
            if entry[0] == total:
                del waiting[msg.subject.rsplit(".", 1)[-1]]
                await nc.publish(entry[1], b"\x81\xa4done\xc3")  # {"done": true}

    async def on_request(msg: Msg) -> None:
        token = str(next(seq))
        waiting[token] = [0, msg.reply]
        await nc.publish(subject, msg.data, reply=f"{prefix}.{token}")

    await nc.subscribe(f"{prefix}.*", cb=on_answer, pending_msgs_limit=1_000_000)
    await nc.subscribe(f"{subject}.relay", cb=on_request)


async def main(context: Path, subject: str, count: int, total: int = 0) -> None:
    ctx = ClientContext.read(context)
    nc = await connect_client(list(ctx.servers), security=ctx.security())
    answer = b"\x81\xa4bids\x90"  # msgpack {"bids": []}: about the size of a bid answer

    async def respond(msg: Msg) -> None:
        await nc.publish(msg.reply, answer)

    for _ in range(count):
        await nc.subscribe(subject, cb=respond)
    if total:
        await _relay(nc, subject, total)
    await nc.flush()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                     int(sys.argv[4]) if len(sys.argv) > 4 else 0))
