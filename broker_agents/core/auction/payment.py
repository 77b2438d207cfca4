"""Who may be paid: the check settlement makes before it debits anyone (issue 13).

The ``acked`` stage of an auction record is a claim written to a bucket, and a sweeper
that takes an auction over acts on what it finds. A payer may be debited only when it
holds an escrow hold for exactly this auction covering the amount (``core.budget.
can_debit``; ``debit`` checks it again in its CAS) and, on a secured deployment, the
record keeps its signed award acknowledgement as evidence: signed by the payer, naming
this auction (and the record's seller, when it names one), accepted, for a total at
least the amount (``judge_ack``). ``payment_refusal`` is that decision; the driver
(``auction/settle.py``) reads the account, verifies the signature and asks it for every
payer before it pays any. It depends only on the record and the accounts, so every
successor reaches the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

from broker_agents.core.budget import Account, DebitRefusal, can_debit


class AckRefusal(StrEnum):
    """Why a payer's award acknowledgement does not allow its debit (bounded labels)."""

    NO_EVIDENCE = "no_evidence"          # the record keeps no signed acknowledgement
    NOT_THE_PAYER = "not_the_payer"      # signed by (or naming) someone else
    NOT_AN_ACK = "not_an_ack"            # the signed payload is not an acknowledgement
    WRONG_AUCTION = "wrong_auction"      # it acknowledges another auction
    WRONG_SELLER = "wrong_seller"        # it names another seller than the record's
    DECLINED = "declined"                # the payer declined the award
    TOTAL_TOO_LOW = "total_too_low"      # it agreed to pay less than the amount (or no total)


def judge_ack(signer: str, payer: str, ack: object, auction_id: str, amount: float,
              seller: str | None = None) -> AckRefusal | None:
    """Whether the acknowledgement ``ack`` (the decoded payload of a signed act whose
    verified signer is ``signer``) lets ``payer`` be debited ``amount`` for ``auction_id``
    (paid to ``seller``, when the acknowledgement names one); None when it does."""
    if signer != payer:
        return AckRefusal.NOT_THE_PAYER
    if not isinstance(ack, Mapping):
        return AckRefusal.NOT_AN_ACK
    if ack.get("bidder", payer) != payer:
        return AckRefusal.NOT_THE_PAYER
    if ack.get("auction_id") != auction_id:
        return AckRefusal.WRONG_AUCTION
    if seller is not None and ack.get("seller", seller) != seller:
        return AckRefusal.WRONG_SELLER
    if ack.get("accepted") is not True:
        return AckRefusal.DECLINED
    total = ack.get("total")
    if (not isinstance(total, int | float) or isinstance(total, bool)
            or not math.isfinite(total) or total < amount):
        return AckRefusal.TOTAL_TOO_LOW
    return None


NO_ACCOUNT = "no_account"
"""A payer with no account at all (a refusal label beside ``DebitRefusal`` and
``AckRefusal``)."""


def payment_refusal(account: Account | None, auction_id: str, payer: str, amount: float, *,
                    secured: bool, signer: str | None, ack: object,
                    unverified: str | None = None, seller: str | None = None) -> str | None:
    """Why ``payer`` must not be debited ``amount`` for ``auction_id`` (and paid to
    ``seller``) as a bounded label, or None: it may (or was debited already, and its
    evidence allows paying ``seller``).

    ``account``: the payer's, fresh; ``signer``: the verified signer of the stored
    acknowledgement (None: there is none); ``ack``: its decoded payload; ``unverified``:
    why its signature did not verify, if it did not. Without ``secured`` (nothing is
    signed) the hold is the only check.
    """
    if account is None:
        return NO_ACCOUNT
    if not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        return str(DebitRefusal.INVALID_AMOUNT)
    # Paid already (a settler resuming between the debit and the credits): the hold is
    # gone, but the evidence is still checked, or a record naming another seller could
    # have the payee credited money nobody paid it.
    if account.fenced(auction_id) != "paid":
        refusal = can_debit(account, auction_id, amount)
        if refusal is not None:
            return str(refusal)
    if not secured:
        return None
    if unverified is not None:
        return unverified
    if signer is None:
        return str(AckRefusal.NO_EVIDENCE)
    verdict = judge_ack(signer, payer, ack, auction_id, amount, seller)
    return None if verdict is None else str(verdict)


__all__ = ["NO_ACCOUNT", "AckRefusal", "judge_ack", "payment_refusal"]
