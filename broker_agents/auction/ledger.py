"""Budgets in KV: the pure account operations applied with bounded CAS retry.

Each write is computed from the exact record (and revision) it replaces, so the checks of
``core.budget`` (balance never negative, escrow within balance) hold under any
interleaving of auctioneers on any nodes. Reputation lives in ``broker_agents.reputation``.
"""

from __future__ import annotations

from broker_agents.core import budget
from broker_agents.core.budget import Account, Hold
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.kv import CasBook, all_keys


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

    async def reserve(self, owner: str, auction_id: str, amount: float, *,
                      taken_ms: int | None = None, by: str | None = None,
                      lease: int | None = None) -> Account:
        """Hold ``amount`` for the auction, describing who took it when under which lease."""
        return await self.apply(  # type: ignore[no-any-return]
            owner, lambda a: budget.reserve(_need(a, owner), auction_id, amount,
                                            taken_ms=taken_ms, by=by, lease=lease))

    async def release(self, owner: str, auction_id: str) -> Hold | None:
        """Release and fence the auction's hold; the hold *this* call removed (None: there
        was none, or another releaser's CAS got there first), so a release is reported once."""
        removed: Hold | None = None

        def op(acc: Account | None) -> Account | None:
            nonlocal removed  # the last call is the one whose write (or no-write) stood
            removed = None if acc is None else acc.holds.get(auction_id)
            return acc if acc is None else budget.release(acc, auction_id)
        await self.apply(owner, op)
        return removed

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
