"""The one wall clock of the IO layer; cores never read it, drivers hand its readings in.

Auctioneers and lease holders on different machines compare these readings (a lease's
expiry, an auction's heartbeat), so they are epoch milliseconds, not a monotonic clock.
"""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)
