"""Who may change variables: a command's actor is the principal that signed it.

A write is proposed as a signed act (``core.identity``): the command's JSON bytes, signed
for the virtual subject ``act_subject(group, space)``, inside the proposal

    {"op": "signed", "act": {"subject": s, "data": <command JSON>, "headers": {Ba-Jwt, ...}}}

The signature travels in the log, so every member verifies the same evidence when it
applies the entry, whichever member the proposal reached and whoever relayed it (the
check is deterministic: a stored act's age is not judged, see ``verify_stored``). The
rules, here so that every member applies the same ones:

- the act's subject names the group and the command's space: an act signed for another
  space, group or protocol is not this command (``:`` never occurs in a real subject's
  tokens, so no message signed for NATS can pass for one);
- the actor is the signer's identity (``bind``): a claimed actor that differs is refused;
- freezing, unfreezing and redefining an existing space need a privileged principal
  (admin or node): a client could otherwise undo a freeze by redefining the space
  without the variable and then with it again;
- an unsigned command is refused when signatures are required; without them
  (``--insecure``) it keeps its claimed actor and may do anything, as before.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from broker_agents.core.identity import Principal, SignedAct, Unauthorized, bind
from broker_agents.core.variables.commands import Command, DefineSpace
from broker_agents.core.versioning import StrictVersionedModel

SIGNED_OP = "signed"
ACT_SUBJECT_PREFIX = "ba-act:variables"


class SignedCommand(StrictVersionedModel):
    """A proposal carrying a command as a signed act (its ``data`` is the command's JSON)."""

    model_config = ConfigDict(frozen=True)

    op: Literal["signed"] = "signed"
    act: SignedAct


def act_subject(group: str, space: str) -> str:
    """The virtual subject a command on ``space`` of ``group`` is signed for."""
    return f"{ACT_SUBJECT_PREFIX}:{group}:{space}"


def space_of(command: Command) -> str:
    return command.space.name if isinstance(command, DefineSpace) else command.space


def check_subject(act: SignedAct, group: str, command: Command) -> None:
    """The act was signed for this group and this command's space."""
    expected = act_subject(group, space_of(command))
    if act.subject != expected:
        raise Unauthorized("wrong_subject", "the command was signed for another group or "
                           "space", {"signed_for": act.subject[:200], "expected": expected})


def authorize(command: Command, principal: Principal | None, *, required: bool,
              privileged: bool) -> Command:
    """``command`` with its actor bound to ``principal``; ``privileged``: the command
    needs an admin or a node (``VariableStateMachine.needs_privilege``). Raises
    ``Unauthorized``."""
    actor = bind(principal, command.actor, "actor", required=required)
    if privileged and principal is not None and not principal.privileged:
        raise Unauthorized("not_privileged", f"a {principal.role} may not {command.op} "
                           f"(admins and nodes may)",
                           {"op": command.op, "principal": principal.identity,
                            "role": str(principal.role)})
    if actor == command.actor:
        return command
    return command.model_copy(update={"actor": actor})
