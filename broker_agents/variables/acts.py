"""Proposing a variables command as a signed act (the rules: ``core.variables.acts``).

``proposal(nc, group, command)`` is what goes into ``ba.raft.<group>.propose``: the
command signed by the connection's user (a node signs ``acting_for`` the agent it hosts,
an admin may act for anyone), or the plain command on a connection that signs nothing
(``--insecure``), whose state machine requires no signature either.
"""

from __future__ import annotations

from typing import Any

from broker_agents import identity
from broker_agents.core.identity import SignedAct
from broker_agents.core.variables.acts import SignedCommand, act_subject, space_of
from broker_agents.core.variables.commands import Command

__all__ = ["act_subject", "proposal"]


def proposal(nc: Any, group: str, command: Command,
             acting_for: str | None = None) -> dict[str, Any]:
    """The proposal carrying ``command``: a ``SignedCommand`` whose act's data is the
    command's JSON, or the command itself when ``nc`` has no signer. A claimed actor
    other than the signer's name is sent as acting-for (which only nodes and admins may)."""
    signer = None if nc is None else identity.identity_of(nc).signer
    if signer is None:
        return command.model_dump(mode="json", exclude_none=True)
    if acting_for is None and command.actor not in (None, signer.name):
        acting_for = command.actor
    data = command.model_dump_json(exclude_none=True).encode()
    subject = act_subject(group, space_of(command))
    act = SignedAct(subject=subject, data=data,
                    headers=signer.headers(subject, data, acting_for))
    return SignedCommand(act=act).model_dump()
