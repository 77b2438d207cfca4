"""Signing PBFT messages: the nkeys implementation lives in ``broker_agents.core.signing``."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from broker_agents.core.pbft.messages import signable
from broker_agents.core.signing import (
    NkeysSigner,
    NkeysVerifier,
    Signer,
    Verifier,
    new_user_seed,
    public_key_of,
    seed_from_rng,
)

__all__ = ["NkeysSigner", "NkeysVerifier", "Signer", "Verifier", "new_user_seed",
           "public_key_of", "seed_from_rng", "sign_message"]

M = TypeVar("M", bound=BaseModel)


def sign_message(msg: M, signer: Signer) -> M:
    """A copy of ``msg`` carrying ``signer``'s signature over its signable bytes."""
    return msg.model_copy(update={"signature": signer.sign(signable(msg))})
