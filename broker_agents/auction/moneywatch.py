"""Where the money is, as Prometheus gauges: one node-side watcher of the accounts bucket.

Every account carries its cumulative ``deposited`` and ``withdrawn`` (``core.budget``:
the treasury's deposits and withdrawals, each applied once per ``op_id``), so the money
issued into the ledger is ``sum(deposited - withdrawn)`` read from the records themselves,
not assumed. Conservation then says ``ba_money_balances == ba_money_issued`` once no
settlement is between its debit and its credit (a debit lands first, so a settlement in
flight shows briefly as balances below issued; the alert waits). The gauges:

- ``ba_money_balances``: the sum of balances;
- ``ba_money_held``: the sum of escrow holds;
- ``ba_money_issued``: deposits minus withdrawals;
- ``ba_money_in_flight``: paid minus received (settlements between their two steps);
- ``ba_money_accounts`` / ``ba_money_corrupt_accounts``: usable and unusable records;
- ``ba_escrow_oldest_hold_age_seconds``: the age of the oldest hold (``Hold.taken_ms``,
  the taker's wall clock; 0 with no dated hold).

The treasury agent runs one (``TreasuryAgent.on_start``). The gauges are computed at
scrape time from a ``KvMirror`` of the bucket (recomputed only when the mirror moved), by
the newest live watcher of the process: several treasury agents in one process see the
same bucket, so any one of them answers for all.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nats.js.kv import KeyValue
from prometheus_client import Gauge

from broker_agents import codec
from broker_agents.core.budget import Account
from broker_agents.kvmirror import KvMirror


@dataclass(frozen=True)
class MoneyTotals:
    balances: float = 0.0
    held: float = 0.0
    issued: float = 0.0
    in_flight: float = 0.0
    accounts: int = 0
    oldest_hold_age_s: float = 0.0


def totals(accounts: Iterable[Account], now_ms: int) -> MoneyTotals:
    """The sums over ``accounts`` (exact float sums: ``math.fsum``)."""
    listed = list(accounts)
    taken = [h.taken_ms for a in listed for h in a.holds.values() if h.taken_ms is not None]
    return MoneyTotals(
        balances=math.fsum(a.balance for a in listed),
        held=math.fsum(a.reserved for a in listed),
        issued=math.fsum(a.deposited - a.withdrawn for a in listed),
        in_flight=math.fsum(a.paid - a.received for a in listed),
        accounts=len(listed),
        oldest_hold_age_s=max(0.0, (now_ms - min(taken)) / 1000) if taken else 0.0)


def _check(key: str, data: bytes) -> Account:
    """A record the watcher may count: decodes, validates, names its own key."""
    account = Account.model_validate(codec.decode(data, max_depth=codec.STORED_MAX_DEPTH))
    if account.owner != key:
        raise ValueError(f"the record under {key} names {account.owner}")
    return account


class MoneyWatch:
    """A ``KvMirror`` of the accounts bucket and the money gauges over it."""

    def __init__(self, kv: KeyValue, bucket: str,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.mirror = KvMirror(kv, bucket, check=_check)
        self._clock_ms = clock_ms
        self._cache: tuple[int, list[Account]] = (-1, [])

    async def start(self, timeout: float = 10.0) -> None:
        await self.mirror.start(timeout)
        _LIVE.append(weakref.ref(self))

    async def stop(self) -> None:
        _LIVE[:] = [ref for ref in _LIVE if ref() not in (self, None)]
        await self.mirror.stop()

    def accounts(self) -> list[Account]:
        """The usable accounts, decoded once per mirror revision."""
        revision = self.mirror.applied_revision
        if self._cache[0] != revision:
            decoded = []
            for key, (data, _) in list(self.mirror.values.items()):
                try:
                    decoded.append(_check(key, data))
                except Exception:  # screened by the mirror already; never breaks a scrape
                    continue
            self._cache = (revision, decoded)
        return self._cache[1]

    def totals(self) -> MoneyTotals:
        return totals(self.accounts(), self._clock_ms())

    @property
    def corrupt(self) -> int:
        return len(self.mirror.skipped)


_LIVE: list[weakref.ref[MoneyWatch]] = []
"""The started, not yet stopped watchers of this process, oldest first."""


def _newest() -> MoneyWatch | None:
    for ref in reversed(_LIVE):
        watch = ref()
        if watch is not None:
            return watch
    return None


def _read(field: str) -> Callable[[], float]:
    def value() -> float:
        watch = _newest()
        if watch is None:
            return math.nan  # no watcher in this process: absent rather than a false 0
        if field == "corrupt":
            return float(watch.corrupt)
        return float(getattr(watch.totals(), field))
    return value


# Each name written out whole: the alert and dashboard tests find metrics by grepping.
Gauge("ba_money_balances", "Sum of account balances in the accounts bucket"
      ).set_function(_read("balances"))
Gauge("ba_money_held", "Sum of escrow holds in the accounts bucket").set_function(_read("held"))
Gauge("ba_money_issued", "Money issued into the ledger: treasury deposits minus withdrawals, "
      "summed from the accounts' cumulative fields").set_function(_read("issued"))
Gauge("ba_money_in_flight", "Settlements between debit and credit: paid minus received"
      ).set_function(_read("in_flight"))
Gauge("ba_money_accounts", "Usable account records").set_function(_read("accounts"))
Gauge("ba_money_corrupt_accounts", "Account records the watcher could not use"
      ).set_function(_read("corrupt"))
Gauge("ba_escrow_oldest_hold_age_seconds", "Age of the oldest escrow hold (0 with none)"
      ).set_function(_read("oldest_hold_age_s"))
