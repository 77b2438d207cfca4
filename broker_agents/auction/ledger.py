"""Budgets and reputation in KV: the pure record operations applied with bounded CAS retry.

Each write is computed from the exact record (and revision) it replaces, so the checks of
``core.budget`` (balance never negative, escrow within balance) and ``core.reputation``
(one report per task) hold under any interleaving of auctioneers on any nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.auction.kvstore import KvMirror
from broker_agents.core import budget, reputation
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.reputation import Reputation
from broker_agents.kv import all_keys, is_cas_conflict

M = TypeVar("M", bound=BaseModel)
MAX_ATTEMPTS = 16


class CasBook:
    """Read-modify-CAS of pydantic records under one key each."""

    model: type[BaseModel] = BaseModel

    def __init__(self, kv: KeyValue, mirror: KvMirror | None = None) -> None:
        self.kv = kv
        self.mirror = mirror
        self._decoded: dict[str, tuple[int, Any]] = {}

    def _decode(self, data: bytes) -> Any:
        return self.model.model_validate(codec.decode(data))

    def _cached(self, key: str, data: bytes, rev: int) -> Any:
        """Decode a mirrored value once per revision (records are frozen: safe to share)."""
        hit = self._decoded.get(key)
        if hit is not None and hit[0] == rev:
            return hit[1]
        record = self._decode(data)
        self._decoded[key] = (rev, record)
        return record

    async def read(self, key: str, fresh: bool = True) -> tuple[Any | None, int]:
        """The record and its revision (0 when absent); from the mirror unless ``fresh``."""
        if not fresh and self.mirror is not None:
            cached = self.mirror.get(key)
            if cached is None:
                return None, 0
            return self._cached(key, cached[0], cached[1]), cached[1]
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None, 0
        assert entry.value is not None
        return self._decode(entry.value), entry.revision or 0

    async def apply(self, key: str, op: Callable[[Any | None], Any]) -> Any:
        """Apply ``op(record) -> record`` with CAS; an unchanged (same) record is not written.

        The first read may come from the mirror (no round trip); a conflict re-reads the key.
        """
        fresh = self.mirror is None
        for _ in range(MAX_ATTEMPTS):
            record, rev = await self.read(key, fresh=fresh)
            new = op(record)
            if new is record:
                return record
            data = codec.encode(new)
            try:
                if rev == 0:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=rev)
                return new
            except Exception as exc:
                if not is_cas_conflict(exc):
                    raise
                fresh = True
        raise BrokerError(ErrorCode.CONFLICT, f"{key}: too much contention, gave up after "
                          f"{MAX_ATTEMPTS} attempts", {"key": key})


def _need(account: Account | None, owner: str) -> Account:
    if account is None:
        raise BrokerError(ErrorCode.INSUFFICIENT_FUNDS, f"{owner} has no account",
                          {"owner": owner})
    return account


class Ledger(CasBook):
    """Accounts bucket: deposits, escrow holds and exactly-once settlement steps."""

    model = Account

    async def account(self, owner: str) -> Account | None:
        record, _ = await self.read(owner)
        return record

    async def deposit(self, owner: str, amount: float, op_id: str,
                      max_per_task: float | None = None) -> Account:
        def op(acc: Account | None) -> Account:
            base = acc if acc is not None else budget.open_account(owner)
            if max_per_task is not None and base.max_per_task != max_per_task:
                base = base.model_copy(update={"max_per_task": max_per_task})
            return budget.deposit(base, op_id, amount)
        return await self.apply(owner, op)  # type: ignore[no-any-return]

    async def reserve(self, owner: str, auction_id: str, amount: float) -> Account:
        return await self.apply(  # type: ignore[no-any-return]
            owner, lambda a: budget.reserve(_need(a, owner), auction_id, amount))

    async def release(self, owner: str, auction_id: str) -> Account | None:
        def op(acc: Account | None) -> Account | None:
            return acc if acc is None else budget.release(acc, auction_id)
        return await self.apply(owner, op)  # type: ignore[no-any-return]

    async def debit(self, owner: str, auction_id: str, amount: float) -> Account:
        return await self.apply(  # type: ignore[no-any-return]
            owner, lambda a: budget.debit(_need(a, owner), auction_id, amount))

    async def credit(self, owner: str, auction_id: str, payer: str, amount: float) -> Account:
        def op(acc: Account | None) -> Account:
            base = acc if acc is not None else budget.open_account(owner)
            return budget.credit(base, auction_id, payer, amount)
        return await self.apply(owner, op)  # type: ignore[no-any-return]

    async def all_accounts(self) -> list[Account]:
        accounts = [await self.account(k) for k in sorted(await all_keys(self.kv))]
        return [a for a in accounts if a is not None]


def reputation_tick() -> int:
    """Reputation time is in seconds (the core's default half-life is 1000 ticks)."""
    return int(time.time())


class ReputationBook(CasBook):
    """Reputation bucket: reports from counterparties of settled auctions, gated scores."""

    model = Reputation

    async def score(self, agent: str, fresh: bool = True) -> float | None:
        record, _ = await self.read(agent, fresh=fresh)
        if record is None:
            return None
        return reputation.score_at(record, reputation_tick())

    async def report(self, report: reputation.Report,
                     settled: reputation.SettledAuction) -> Reputation:
        now = reputation_tick()

        def op(rec: Reputation | None) -> Reputation:
            base = rec if rec is not None else Reputation(agent=report.subject)
            return reputation.record_report(base, report, settled, now)
        return await self.apply(report.subject, op)  # type: ignore[no-any-return]
