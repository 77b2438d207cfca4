"""Logging that a flood cannot turn into a flood of log lines.

One line per key and window; the lines suppressed meanwhile are counted into the next
one (``suppressed``), so nothing is hidden, only summarised. Use it wherever hostile
input decides how often something is logged: refusals, slow-consumer drops, rate limits.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_WINDOW_S = 10.0
MAX_KEYS = 1024


class RateLimitedLog:
    """Wraps a structlog logger; ``warning(key, event, **fields)`` and friends log at
    most once per ``window_s`` per key."""

    def __init__(self, log: Any, window_s: float = DEFAULT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.window_s = window_s
        self._clock = clock
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def allow(self, key: Hashable) -> int | None:
        """None: suppress this line; else the number of lines suppressed before it."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        if len(self._last) > MAX_KEYS:
            self._last.popitem(last=False)
        return 0 if last is None else last[1]

    def _emit(self, level: str, key: Hashable, event: str, fields: dict[str, Any]) -> None:
        suppressed = self.allow(key)
        if suppressed is None:
            return
        if suppressed:
            fields = {**fields, "suppressed": suppressed}
        getattr(self._log, level)(event, **fields)

    def info(self, key: Hashable, event: str, **fields: Any) -> None:
        self._emit("info", key, event, fields)

    def warning(self, key: Hashable, event: str, **fields: Any) -> None:
        self._emit("warning", key, event, fields)

    def error(self, key: Hashable, event: str, **fields: Any) -> None:
        self._emit("error", key, event, fields)
