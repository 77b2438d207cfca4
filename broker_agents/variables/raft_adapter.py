"""``VariablesRaftAdapter``: the pure variables core (``core.variables.VariableStateMachine``)
adapted to Raft's ``StateMachine`` protocol: apply, query, snapshot, restore, plus metrics
and change listeners, which the pure core must not have.

Commands are the core's ``DefineSpace | SetValues | Freeze | Unfreeze`` as plain dicts
(``{"op": "set", "space": ..., "values": {...}}``; JSON works over ``ba.raft.<group>.propose``).
A rejected command comes back as ``{"error": {"code", "message", "details"}}`` -- the
same on every member -- which the Raft driver and clients raise as a ``BrokerError``
(``validation_error`` details name the variable, the value and the constraint).

Queries (``{"op": ...}``) for linearizable reads through the group:

    {"op": "spaces"}                          -> {"spaces": [names]}
    {"op": "space", "space": s}               -> {"space": <definition>, "version": n}
    {"op": "values", "space": s}              -> SpaceValues
    {"op": "state"}                           -> {"version": n, "spaces": {s: SpaceValues}}
    {"op": "get", "space": s, "name": v}      -> VariableView
    {"op": "history", "space": s, "name": v}  -> {"history": [HistoryEntry]}

Writes are signed acts (``core.variables.acts``): ``{"op": "signed", "act": ...}``, whose
signer becomes the command's actor; freeze, unfreeze and redefining a space need an admin
or a node. The adapter verifies with the authenticator of the member's connection
(``bind_connection``, which the node calls before the member starts): it trusts the
account that issued the node's creds, and on an ``--insecure`` connection it requires no
signature, so plain commands keep their claimed actor there. An adapter never bound
refuses every write (``unauthorized``, reason ``unbound``): it cannot tell who asked.
Refusals are error results like any rejection, counted in
``ba_unauthorized_total{component="variables",reason}`` and logged once per window.

After every command that changes a space, listeners get a ``VariableChange`` carrying the
space's full values (the publisher sends it on NATS). Listeners run inside ``apply``; they
must not raise and must not block -- they only queue work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from broker_agents import identity
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized
from broker_agents.core.variables import VariableStateMachine
from broker_agents.core.variables.acts import (
    SIGNED_OP,
    SignedCommand,
    authorize,
    check_subject,
)
from broker_agents.core.variables.commands import Command, DefineSpace, SetValues
from broker_agents.core.variables.functions import DEFAULT_REGISTRY, FunctionRegistry
from broker_agents.core.variables.statemachine import DEFAULT_HISTORY
from broker_agents.identity import Authenticator
from broker_agents.logging import get_logger
from broker_agents.variables import metrics
from broker_agents.variables.models import SpaceValues, VariableChange

Listener = Callable[[VariableChange], None]
_log = get_logger(component="variables.raft_adapter")
COMPONENT = "variables"


class VariablesRaftAdapter:
    """What a consensus group running ``state_machine = "variables"`` applies commands to."""

    def __init__(self, registry: FunctionRegistry = DEFAULT_REGISTRY, *,
                 history_limit: int = DEFAULT_HISTORY,
                 authenticator: Authenticator | None = None,
                 group: str = "variables") -> None:
        self.core = VariableStateMachine(registry, history_limit=history_limit)
        self.authenticator = authenticator
        self.group = group
        self._listeners: list[Listener] = []

    def bind_connection(self, nc: Any, group: str) -> None:
        """Verify signed commands as ``nc`` does (the member's connection: the account it
        trusts, and whether signatures are required); ``group``: the group's name, which
        every act names. Call before the member starts (its log replays through apply)."""
        self.authenticator = identity.identity_of(nc).authenticator
        self.group = group

    # -- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, change: VariableChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a listener must never change what apply returns
                _log.exception("variables.listener_failed", space=change.space)

    # -- StateMachine protocol -----------------------------------------------------------

    def apply(self, command: Any) -> Any:
        try:
            cmd = self._authorized(command)
        except Unauthorized as exc:
            identity.refused(COMPONENT, exc, group=self.group)
            metrics.REJECTED.labels(exc.code).inc()
            return exc.to_payload()
        except BrokerError as exc:
            metrics.REJECTED.labels(exc.code).inc()
            return exc.to_payload()
        name = cmd.space.name if isinstance(cmd, DefineSpace) else cmd.space
        before = self._space_version(name)
        result = self.core.apply(cmd)
        if not result.ok:
            error = result.error or {"code": ErrorCode.INTERNAL, "message": "rejected"}
            metrics.REJECTED.labels(str(error.get("code"))).inc()
            return {"error": error}
        out = result.model_dump(mode="json")
        if result.duplicate or result.space_version == before or result.space is None:
            return out
        space_version = result.space_version or 0
        metrics.VERSION.labels(result.space).set(space_version)
        if isinstance(cmd, SetValues) and result.changed:
            metrics.SETS.labels(result.space).inc()
        if self._listeners:
            self._emit(VariableChange(
                space=result.space, version=space_version, values=result.values,
                frozen=result.frozen, op=cmd.op, sm_version=result.version,
                changed=result.changed, actor=cmd.actor,
                reason=cmd.reason if isinstance(cmd, SetValues) else "",
                command_id=cmd.command_id,
            ))
        return out

    def _authorized(self, command: Any) -> Command:
        """The command, its actor bound to the signer; raises ``Unauthorized`` (or
        ``malformed``). Deterministic: every member decides the same."""
        auth = self.authenticator
        if auth is None:
            raise Unauthorized("unbound", "this variables state machine has no account to "
                               "trust (it was never bound to its member's connection)")
        if isinstance(command, dict) and command.get("op") == SIGNED_OP:
            try:
                signed = SignedCommand.model_validate(command)
            except ValidationError as exc:
                raise BrokerError(ErrorCode.MALFORMED, "bad signed variables command: "
                                  f"{exc.errors()[0]['msg']}") from None
            principal = auth.verify_stored(signed.act)
            cmd = VariableStateMachine.parse(signed.act.data)
            check_subject(signed.act, self.group, cmd)
        else:
            principal, cmd = None, VariableStateMachine.parse(command)
        return authorize(cmd, principal, required=auth.required,
                         privileged=self.core.needs_privilege(cmd))

    def query(self, query: Any) -> Any:
        try:
            return self._query(query)
        except BrokerError as exc:
            return exc.to_payload()

    def snapshot(self) -> bytes:
        return self.core.snapshot()

    def restore(self, data: bytes) -> None:
        self.core.restore(data)
        for name in self.core.spaces():
            values = self.space_values(name)
            metrics.VERSION.labels(name).set(values.version)
            if self._listeners:
                self._emit(VariableChange(**values.model_dump(), op="snapshot",
                                          sm_version=self.core.version))

    # -- reads ---------------------------------------------------------------------------

    def space_values(self, space: str) -> SpaceValues:
        return SpaceValues(space=space, version=self.core.space_version(space),
                           values=self.core.values(space), frozen=sorted(self.core.frozen(space)))

    def _space_version(self, space: str) -> int | None:
        try:
            return self.core.space_version(space)
        except BrokerError:
            return None

    def _query(self, query: Any) -> Any:
        if not isinstance(query, dict) or not isinstance(query.get("op"), str):
            raise BrokerError(ErrorCode.BAD_REQUEST, "a variables query is {'op': ...}")
        op = query["op"]
        if op == "spaces":
            return {"spaces": self.core.spaces()}
        if op == "state":
            return {"version": self.core.version, "spaces": {
                n: self.space_values(n).model_dump(mode="json") for n in self.core.spaces()}}
        space = _field(query, "space")
        if op == "values":
            return self.space_values(space).model_dump(mode="json")
        if op == "space":
            return {"space": self.core.space(space).model_dump(mode="json"),
                    "version": self.core.space_version(space)}
        if op == "get":
            return self.core.get(space, _field(query, "name")).model_dump(mode="json")
        if op == "history":
            entries = self.core.history(space, _field(query, "name"))
            return {"history": [e.model_dump(mode="json") for e in entries]}
        raise BrokerError(ErrorCode.BAD_REQUEST, f"unknown variables query {op!r}",
                          {"known": ["get", "history", "space", "spaces", "state", "values"]})


def _field(query: dict[str, Any], key: str) -> str:
    value = query.get(key)
    if not isinstance(value, str) or not value:
        raise BrokerError(ErrorCode.BAD_REQUEST, f"query needs a {key!r} string", {"field": key})
    return value


def factory() -> VariablesRaftAdapter:
    """What ``state_machine = "variables"`` builds: built-in composite functions only.

    Every member of a group must use the same functions; a deployment with its own
    registers a ``module:factory`` that passes the same ``FunctionRegistry`` everywhere.
    The node binds it to its connection (``bind_connection``) before the member starts.
    """
    return VariablesRaftAdapter()
