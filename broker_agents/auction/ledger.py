"""Budgets in KV: the pure account operations applied with bounded CAS retry.

Each write is computed from the exact record (and revision) it replaces, so the checks of
``core.budget`` (balance never negative, escrow within balance, debits only against the
auction's hold) hold under any interleaving of auctioneers on any nodes. Reputation lives
in ``broker_agents.reputation``.

A stored account is untrusted input: one that does not decode, fails ``Account``'s
validation or names another owner is ``CorruptAccount`` (``malformed``) for every
operation on that key, and only that key: the auction that touches it fails, the others
go on. Each such read is counted in ``ba_kv_records_skipped_total{bucket="accounts"}`` and
logged with the key (``kvskip``). ``listing`` reads every key and reports the corrupt ones
as rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker_agents import codec, kvskip
from broker_agents.core import budget
from broker_agents.core.budget import Account, Hold
from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError
from broker_agents.kv import CasBook, all_keys, is_cas_conflict


class CorruptAccount(RemoteProtocolError):
    """The account stored under ``owner`` is not a usable account record."""

    def __init__(self, owner: str, reason: str) -> None:
        super().__init__(ErrorCode.MALFORMED, f"the account record of {owner} is corrupt: "
                         f"{reason}", {"owner": owner, "reason": reason[:200]})
        self.owner = owner


def _corrupt(owner: str, exc: BaseException, reason: str, problem: str,
             report: bool) -> CorruptAccount:
    """The refusal of an unusable account record; ``report``: count and log it (with its
    key, rate-limited)."""
    if report:
        kvskip.record_skipped("accounts", owner, 0, exc, reason)
    return CorruptAccount(owner, problem)


@dataclass(frozen=True)
class Listed:
    """One key of the accounts bucket: its account, or why it is unusable."""

    key: str
    account: Account | None
    problem: str | None = None


def _need(account: Account | None, owner: str) -> Account:
    if account is None:
        raise BrokerError(ErrorCode.INSUFFICIENT_FUNDS, f"{owner} has no account",
                          {"owner": owner})
    return account


class Ledger(CasBook):
    """Accounts bucket: deposits, escrow holds and exactly-once settlement steps."""

    model = Account

    async def read(self, key: str, fresh: bool = True) -> tuple[Any | None, int]:
        """The account and its revision; ``CorruptAccount`` (counted, logged) when the
        record is unusable."""
        return await self._read(key, fresh, report=True)

    async def _read(self, key: str, fresh: bool, *, report: bool) -> tuple[Any | None, int]:
        try:
            account, rev = await super().read(key, fresh)
        except BrokerError as exc:
            if exc.code not in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE):
                raise
            raise _corrupt(key, exc, kvskip.UNDECODABLE, exc.message, report) from exc
        except ValueError as exc:  # pydantic's ValidationError: the schema's refusal
            raise _corrupt(key, exc, kvskip.INVALID, str(exc).splitlines()[0],
                           report) from exc
        if account is not None and account.owner != key:
            problem = CorruptAccount(key, f"it belongs to {account.owner!r}")
            raise _corrupt(key, problem, kvskip.FOREIGN, problem.message, report)
        return account, rev

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

    async def withdraw(self, owner: str, amount: float, op_id: str) -> Account:
        return await self.apply(  # type: ignore[no-any-return]
            owner, lambda a: budget.withdraw(_need(a, owner), op_id, amount))

    async def set_frozen(self, owner: str, frozen: bool, op_id: str) -> Account:
        def op(acc: Account | None) -> Account:
            base = acc if acc is not None else budget.open_account(owner)
            return budget.set_frozen(base, op_id, frozen)
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

    async def debit(self, owner: str, auction_id: str, amount: float, *,
                    known: tuple[Account | None, int] | None = None) -> Account:
        """Pay out of the auction's hold (refused, details ``refusal``, without one).

        ``known``: the account and its revision as just read from the bucket (settlement
        read it to verify the payment): the debit is computed from it and written with a
        CAS on that revision, with no read before the write. If the account moved since,
        the CAS fails and the debit starts over from a fresh read, so it is still computed
        from the exact record it replaces (a hold released meanwhile refuses it).
        """
        def op(a: Account | None) -> Account:
            return budget.debit(_need(a, owner), auction_id, amount)
        if known is not None and known[1] > 0:
            account, rev = known
            new = op(account)
            if new is account:
                return new
            try:
                await self.kv.update(owner, codec.encode(new), last=rev)
                return new
            except Exception as exc:
                if not is_cas_conflict(exc):
                    raise
        return await self.apply(owner, op)  # type: ignore[no-any-return]

    async def credit(self, owner: str, auction_id: str, payer: str, amount: float) -> Account:
        def op(acc: Account | None) -> Account:
            base = acc if acc is not None else budget.open_account(owner)
            return budget.credit(base, auction_id, payer, amount)
        return await self.apply(owner, op)  # type: ignore[no-any-return]

    async def listing(self) -> list[Listed]:
        """Every key, sorted: its account, or the problem that makes it unusable (shown
        by the caller, so not logged)."""
        out = []
        for key in sorted(await all_keys(self.kv)):
            try:
                account, _ = await self._read(key, True, report=False)
            except CorruptAccount as exc:
                out.append(Listed(key, None, str(exc.details.get("reason", exc.message))))
                continue
            if account is not None:
                out.append(Listed(key, account))
        return out

    async def all_accounts(self) -> list[Account]:
        """Every usable account (corrupt records skipped: see ``listing``)."""
        return [row.account for row in await self.listing() if row.account is not None]


__all__ = ["CorruptAccount", "Ledger", "Listed"]
