"""Listing a KV bucket's keys without mistaking a hiccup for an empty bucket."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.js.errors


async def all_keys(kv: Any, attempts: int = 5) -> list[str]:
    """Every key of the bucket.

    nats-py raises ``NoKeysError`` whenever its watcher saw no keys, which also happens
    while the stream is changing leaders. Believe it only when the bucket's status agrees
    that it holds no values; otherwise ask again with backoff.
    """
    for attempt in range(attempts):
        try:
            return list(await kv.keys())
        except nats.js.errors.NoKeysError:
            if (await kv.status()).values == 0 or attempt == attempts - 1:
                return []
            await asyncio.sleep(0.05 * 2 ** attempt)  # retry backoff
    return []
