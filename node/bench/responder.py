"""``python -m node.bench.responder CONTEXT SUBJECT N``: N plain nats-py
responders on SUBJECT (the raw fan-out baseline of the benchmarks), connected with the
client context file CONTEXT (a node's: servers, creds, CA). Prints "ready"."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nats.aio.msg import Msg

from broker_agents.transport import connect_client
from node.auth.context import ClientContext


async def main(context: Path, subject: str, count: int) -> None:
    ctx = ClientContext.read(context)
    nc = await connect_client(list(ctx.servers), security=ctx.security())
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
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
