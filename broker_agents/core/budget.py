"""Budget ledger: pure operations on one account record, applied by the IO layer with CAS.

An account lives under one key of the accounts bucket. Every operation is a pure function
``account -> new account`` or raises ``BrokerError``; the driver reads the record with its
KV revision, calls the function, and writes the result with ``update(key, value, last=rev)``
(retrying from a fresh read when the CAS fails). Because each write is computed from the
exact record it replaces, the checks made here hold under any interleaving of auctioneers:
a balance never goes negative and escrow never exceeds the balance.

Escrow is a ``Hold`` per auction id (``reserved`` is their sum). A hold describes itself:
its amount, when it was taken and by which auctioneer under which lease (the auction
record's takeover count), so an audit can tell an in-flight hold from an orphan without
asking anyone. Settlement touches two keys, so it is two idempotent steps the driver
applies in order and may retry after a crash: ``debit`` the winner (consuming its hold;
one payment per payer and auction — a combinatorial winner pays its total) then ``credit``
the seller. Each account remembers the operation ids it applied (the newest
``APPLIED_LIMIT``), so a repeated step returns the record unchanged — the same object, so
the driver can skip the write. The auction record in the auctions bucket is the long-term
guard; the per-account window only has to outlast the driver's retries. A settlement
``(auction_id, payer)`` must always be replayed with the payee and amount of the stored
outcome; the two halves cannot check each other because they live under different keys.

Holds are fenced: ``release`` and ``debit`` leave a tombstone (``release:<id>``,
``debit:<id>``) even when no hold exists yet, and ``reserve`` refuses an auction that has
one. A deposed auctioneer that learns of its lost lease only at its next write may still
call ``reserve`` after its successor failed (or settled) the auction; the CAS on the
account serializes that reserve with the successor's release, and whichever comes second
sees the other: no hold survives an auction whose escrow was released or paid. The
auctioneers' reconcile sweep (``core.auction.audit``) is the second line, for a tombstone
that left the window or a driver that died between its stage write and its releases.

Every account also carries its cumulative ``deposited``, ``withdrawn``, ``paid`` and
``received``, so conservation is checkable from the records alone: ``balance == deposited -
withdrawn - paid + received`` per account, and, once no settlement is in flight, total paid
== total received. A record from before these fields counts its balance as deposited.

Money enters and leaves only through the treasury (``deposit``, ``withdraw``, each keyed by
an operation id) and moves only from a payer's hold to a seller: ``debit`` refuses an
auction for which the payer holds no escrow covering the amount (``can_debit``), so a
settlement can never take money the auction did not escrow. A ``frozen`` account takes no
new holds and withdraws nothing (``available`` is 0); holds taken before still settle.

Everything read from the accounts bucket is untrusted: ``Account`` refuses a record with a
negative or non-finite amount, escrow above the balance, or more applied ids than the
window (the driver skips, counts and reports such a record, never acts on it).

Money is a float; the checks rely on IEEE rounding being monotone (``b >= a`` implies
``b - a >= 0``), so balances stay non-negative exactly, while totals are conserved up to
float rounding.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, computed_field, field_validator, model_validator

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.versioning import OpenModel, VersionedModel

APPLIED_LIMIT = 1000
"""How many applied operation ids an account remembers (oldest forgotten first)."""

TOLERANCE = 1e-6
"""Absolute slack (money units) when sums of floats are compared with a balance."""

Money = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Hold(OpenModel):
    """One auction's escrow on an account. ``taken_ms`` (the taker's clock), ``by`` (the
    auctioneer) and ``lease`` (the auction record's takeover count when it was taken) are
    None on holds stored before holds described themselves."""

    model_config = ConfigDict(frozen=True)

    amount: Money
    taken_ms: int | None = None
    by: str | None = None
    lease: int | None = None


class Account(VersionedModel):
    """One agent's money. ``reserved`` (sum of holds) is derived and sent for readers."""

    model_config = ConfigDict(frozen=True)

    owner: str = Field(min_length=1)
    balance: Money = 0.0
    holds: dict[str, Hold] = Field(default_factory=dict)
    max_per_task: Money | None = None
    applied: tuple[str, ...] = Field(default=(), max_length=APPLIED_LIMIT)
    version: int = 0
    deposited: Money = 0.0
    withdrawn: Money = 0.0
    paid: Money = 0.0
    received: Money = 0.0
    frozen: bool = False

    @model_validator(mode="before")
    @classmethod
    def _opening_balance(cls, data: Any) -> Any:
        """A record without the cumulative fields (older) counts its balance as deposited.
        ``reserved`` is derived (sent for readers): never kept as an unknown field."""
        if isinstance(data, dict):
            if "reserved" in data:
                data = dict(data)  # the caller's dict is left alone
                del data["reserved"]
            if "deposited" not in data:
                return {**data, "deposited": data.get("balance", 0.0)}
        return data

    @field_validator("holds", mode="before")
    @classmethod
    def _bare_amounts(cls, holds: Any) -> Any:
        """Older records store a hold as its bare amount."""
        if isinstance(holds, dict):
            return {k: {"amount": v} if isinstance(v, int | float) else v
                    for k, v in holds.items()}
        return holds

    @model_validator(mode="after")
    def _escrow_within_balance(self) -> Account:
        """A record holding more than its balance was not written by ``core.budget``."""
        reserved = self.reserved
        if reserved > self.balance and not math.isclose(reserved, self.balance,
                                                        rel_tol=1e-9, abs_tol=TOLERANCE):
            raise ValueError(f"holds {self.reserved} exceed the balance {self.balance}")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reserved(self) -> float:
        return math.fsum(h.amount for h in self.holds.values())

    @property
    def available(self) -> float:
        """What the owner can still commit: balance minus escrow (nothing when frozen)."""
        return 0.0 if self.frozen else self.balance - self.reserved

    def fenced(self, auction_id: str) -> str | None:
        """Why no hold may be taken for this auction any more: "released", "paid" or None."""
        if f"release:{auction_id}" in self.applied:
            return "released"
        if f"debit:{auction_id}" in self.applied:
            return "paid"
        return None


def open_account(owner: str, balance: float = 0.0, max_per_task: float | None = None) -> Account:
    return Account(owner=owner, balance=_amount(balance), max_per_task=max_per_task)


def _amount(value: float, what: str = "amount") -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BrokerError(ErrorCode.VALIDATION, f"{what} must be a finite number >= 0",
                          {"field": what, "value": repr(value)})
    return float(value)


def _positive(value: float, what: str = "amount") -> float:
    """Money from or to outside the ledger: finite and above zero."""
    if _amount(value, what) == 0:
        raise BrokerError(ErrorCode.VALIDATION, f"{what} must be above 0",
                          {"field": what, "value": repr(value)})
    return float(value)


def _changed(account: Account, op_id: str | None = None, **update: object) -> Account:
    applied = account.applied
    if op_id is not None:
        applied = (*applied, op_id)[-APPLIED_LIMIT:]
    return account.model_copy(update={**update, "applied": applied,
                                      "version": account.version + 1})


def _without(account: Account, auction_id: str) -> dict[str, Hold]:
    return {k: v for k, v in account.holds.items() if k != auction_id}


def check_cost(account: Account, amount: float) -> None:
    """Raise unless the owner may commit ``amount`` now (per-task cap, then funds)."""
    _amount(amount)
    cap = account.max_per_task
    if cap is not None and amount > cap:
        raise BrokerError(
            ErrorCode.BUDGET_EXCEEDED,
            f"cost {amount} exceeds the maximum per-task budget {cap}",
            {"owner": account.owner, "cost": amount, "max_per_task": cap},
        )
    if amount > account.available:
        raise BrokerError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"{account.owner} can afford {account.available}, not {amount}",
            {"owner": account.owner, "available": account.available, "cost": amount},
        )


def deposit(account: Account, op_id: str, amount: float) -> Account:
    """Add money from outside the ledger (the treasury); idempotent on ``op_id``."""
    key = f"deposit:{op_id}"
    if key in account.applied:
        return account
    amount = _positive(amount)
    return _changed(account, key, balance=account.balance + amount,
                    deposited=account.deposited + amount)


def withdraw(account: Account, op_id: str, amount: float) -> Account:
    """Take money out of the ledger (the treasury); idempotent on ``op_id``. Only what is
    available: never escrowed money, nothing from a frozen account."""
    key = f"withdraw:{op_id}"
    if key in account.applied:
        return account
    amount = _positive(amount)
    if account.frozen:
        raise BrokerError(ErrorCode.REJECTED, f"account {account.owner} is frozen",
                          {"owner": account.owner, "frozen": True})
    if amount > account.available:
        raise BrokerError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"{account.owner} can withdraw {account.available}, not {amount}",
            {"owner": account.owner, "available": account.available, "amount": amount})
    return _changed(account, key, balance=account.balance - amount,
                    withdrawn=account.withdrawn + amount)


def set_frozen(account: Account, op_id: str, frozen: bool) -> Account:
    """Freeze (no new holds, no withdrawals) or unfreeze; idempotent on ``op_id``."""
    key = f"{'freeze' if frozen else 'unfreeze'}:{op_id}"
    if key in account.applied:
        return account
    return _changed(account, key, frozen=frozen)


def reserve(account: Account, auction_id: str, amount: float, *, taken_ms: int | None = None,
            by: str | None = None, lease: int | None = None) -> Account:
    """Escrow ``amount`` for a winning bid; idempotent for the same auction and amount.

    Refused (``CONFLICT``, details ``fenced``) once the auction's escrow was released or
    paid: a late reserve must never lock funds again.
    """
    held = account.holds.get(auction_id)
    if held is not None:
        if held.amount == amount:
            return account
        raise BrokerError(ErrorCode.CONFLICT,
                          f"auction {auction_id} already holds {held.amount}, not {amount}",
                          {"auction_id": auction_id, "held": held.amount})
    fenced = account.fenced(auction_id)
    if fenced is not None:
        raise BrokerError(ErrorCode.CONFLICT,
                          f"the escrow of auction {auction_id} was {fenced} already",
                          {"auction_id": auction_id, "owner": account.owner, "fenced": fenced})
    if account.frozen:
        raise BrokerError(ErrorCode.REJECTED, f"account {account.owner} is frozen",
                          {"owner": account.owner, "frozen": True})
    check_cost(account, amount)
    hold = Hold(amount=amount, taken_ms=taken_ms, by=by, lease=lease)
    return _changed(account, holds={**account.holds, auction_id: hold})


def release(account: Account, auction_id: str) -> Account:
    """Drop the auction's hold and fence it (a tombstone, even when there is no hold yet,
    so a late ``reserve`` is refused); the same record once released."""
    key = f"release:{auction_id}"
    if auction_id not in account.holds and key in account.applied:
        return account
    return _changed(account, key, holds=_without(account, auction_id))


class DebitRefusal(StrEnum):
    """Why a debit is refused (a bounded metric label)."""

    NO_HOLD = "no_hold"            # the payer holds no escrow for this auction
    HOLD_TOO_SMALL = "hold_too_small"  # the hold does not cover the amount
    INVALID_AMOUNT = "invalid_amount"


def can_debit(account: Account, auction_id: str, amount: float) -> DebitRefusal | None:
    """Why ``debit(account, auction_id, amount)`` would be refused (None: it would pay, or
    it was paid already). Settlement checks this before it debits anyone."""
    if f"debit:{auction_id}" in account.applied:
        return None
    if not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        return DebitRefusal.INVALID_AMOUNT
    held = account.holds.get(auction_id)
    if held is None:
        return DebitRefusal.NO_HOLD
    if amount > held.amount:
        return DebitRefusal.HOLD_TOO_SMALL
    return None


def debit(account: Account, auction_id: str, amount: float) -> Account:
    """Settlement, payer side: pay ``amount`` out of the auction's hold and drop the hold,
    exactly once.

    Only against a hold for exactly this auction that covers the amount (the price may be
    below it: Vickrey, VCG); anything else is refused (``REJECTED``, details ``refusal``):
    money leaves an account only as escrow its auction took.
    """
    key = f"debit:{auction_id}"
    if key in account.applied:
        return account
    refusal = can_debit(account, auction_id, amount)
    if refusal is not None:
        raise BrokerError(
            ErrorCode.REJECTED,
            f"{account.owner} holds no escrow of auction {auction_id} covering {amount}",
            {"owner": account.owner, "auction_id": auction_id, "cost": amount,
             "refusal": str(refusal)},
        )
    return _changed(account, key, balance=account.balance - amount,
                    holds=_without(account, auction_id), paid=account.paid + amount)


def credit(account: Account, auction_id: str, payer: str, amount: float) -> Account:
    """Settlement, payee side: receive ``payer``'s ``amount`` for the auction, exactly once.

    Keyed by auction *and* payer: a combinatorial auction has several winners paying one
    seller.
    """
    key = f"credit:{auction_id}:{payer}"
    if key in account.applied:
        return account
    amount = _amount(amount)
    return _changed(account, key, balance=account.balance + amount,
                    received=account.received + amount)


def settle(
    payer: Account, payee: Account, auction_id: str, amount: float
) -> tuple[Account, Account]:
    """Both settlement steps at once (for callers holding both records, e.g. tests)."""
    if payer.owner == payee.owner:
        raise BrokerError(ErrorCode.VALIDATION, "payer and payee must differ",
                          {"owner": payer.owner})
    return debit(payer, auction_id, amount), credit(payee, auction_id, payer.owner, amount)
