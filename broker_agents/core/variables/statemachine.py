"""The replicated state of cluster-wide variables, as a pure consensus state machine.

It implements the interface the consensus group drives: ``apply(command) -> result``,
``snapshot() -> bytes`` and ``restore(bytes)``. Every replica applies the same committed
commands in the same order and so reaches the same state, which is why nothing here reads a
clock or a random source, and why a rejected command is *returned* as an error result rather
than raised (raising would make replicas' drivers diverge on what happened).

Versions: one counter for the whole machine increases by one on every command that changes
something. A variable's ``version`` is the counter value of its last change; a space's
``version`` is the last change to anything in it. History keeps the last ``history_limit``
values of each variable.

Who may give a command is decided before it gets here (``acts.authorize``, with
``needs_privilege`` for the rules that depend on the state); ``actor`` is then the signer.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.commands import (
    ApplyResult,
    Command,
    DefineSpace,
    Freeze,
    HistoryEntry,
    SetValues,
    Unfreeze,
    VariableView,
)
from broker_agents.core.variables.errors import invalid, not_found
from broker_agents.core.variables.functions import DEFAULT_REGISTRY, FunctionRegistry, Scalar
from broker_agents.core.variables.space import VariableSpace
from broker_agents.core.variables.types import CompositeVariable

DEFAULT_HISTORY = 100
DEFAULT_DEDUPE = 1024
_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)


class _SpaceState:
    def __init__(self, space: VariableSpace, values: dict[str, Scalar], history_limit: int):
        self.space = space
        self.values = values
        self.versions: dict[str, int] = dict.fromkeys(values, 0)
        self.frozen: set[str] = set()
        self.version = 0
        self.history: dict[str, deque[HistoryEntry]] = {
            n: deque(maxlen=history_limit) for n in values
        }


class _SpaceSnapshot(BaseModel):
    space: VariableSpace
    values: dict[str, Scalar]
    versions: dict[str, int]
    frozen: list[str]
    version: int
    history: dict[str, list[HistoryEntry]]


class _Snapshot(BaseModel):
    format: int = 1
    version: int
    history_limit: int
    spaces: list[_SpaceSnapshot]
    recent: list[tuple[str, ApplyResult]]


class VariableStateMachine:
    def __init__(
        self, registry: FunctionRegistry = DEFAULT_REGISTRY, *,
        history_limit: int = DEFAULT_HISTORY, dedupe_limit: int = DEFAULT_DEDUPE,
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be >= 1")
        self.registry = registry
        self.history_limit = history_limit
        self.dedupe_limit = dedupe_limit
        self.version = 0
        self._spaces: dict[str, _SpaceState] = {}
        self._recent: OrderedDict[str, ApplyResult] = OrderedDict()

    # -- the consensus interface ---------------------------------------------------------

    def apply(self, command: Command | Mapping[str, Any] | bytes | str) -> ApplyResult:
        """Apply one committed command. Never raises for a bad command: returns an error."""
        try:
            cmd = self.parse(command)
        except BrokerError as exc:
            return ApplyResult(ok=False, version=self.version, error=exc.to_payload()["error"])
        seen = _dedupe_key(cmd)
        if seen is not None and seen in self._recent:
            return self._recent[seen].model_copy(update={"duplicate": True})
        try:
            result = self._dispatch(cmd)
        except Exception as exc:  # a registered composite function may raise anything
            if not isinstance(exc, BrokerError):
                exc = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            space = getattr(cmd, "space", None)
            result = ApplyResult(
                ok=False, version=self.version,
                space=space.name if isinstance(space, VariableSpace) else space,
                error=exc.to_payload()["error"],
            )
        if seen is not None:
            self._recent[seen] = result
            while len(self._recent) > self.dedupe_limit:
                self._recent.popitem(last=False)
        return result

    def snapshot(self) -> bytes:
        snap = _Snapshot(
            version=self.version, history_limit=self.history_limit,
            spaces=[
                _SpaceSnapshot(
                    space=s.space, values=s.values, versions=s.versions,
                    frozen=sorted(s.frozen), version=s.version,
                    history={n: list(h) for n, h in s.history.items()},
                )
                for s in self._spaces.values()
            ],
            recent=list(self._recent.items()),
        )
        return snap.model_dump_json().encode()

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot (a bad snapshot leaves the state as it was)."""
        try:
            snap = _Snapshot.model_validate_json(data)
        except ValidationError as exc:
            raise BrokerError(ErrorCode.MALFORMED, f"bad variables snapshot: {exc}") from None
        spaces: dict[str, _SpaceState] = {}
        for s in snap.spaces:
            st = _SpaceState(s.space, dict(s.values), self.history_limit)
            st.versions = dict(s.versions)
            st.frozen = set(s.frozen)
            st.version = s.version
            st.history = {n: deque(h, maxlen=self.history_limit) for n, h in s.history.items()}
            spaces[s.space.name] = st
        self.version = snap.version
        self._spaces = spaces
        self._recent = OrderedDict(snap.recent)

    @staticmethod
    def parse(command: Command | Mapping[str, Any] | bytes | str) -> Command:
        """A command from a model, a decoded dict, or JSON bytes; MALFORMED if it is none."""
        if isinstance(command, DefineSpace | SetValues | Freeze | Unfreeze):
            return command
        try:
            if isinstance(command, bytes | str):
                return _COMMAND.validate_json(command)
            return _COMMAND.validate_python(command)
        except ValidationError as exc:
            errs = exc.errors(include_url=False, include_input=False)
            raise BrokerError(
                ErrorCode.MALFORMED, f"bad variables command: {errs[0]['msg']}",
                {"errors": [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in errs]},
            ) from None

    def needs_privilege(self, command: Command) -> bool:
        """Whether ``command`` is an admin's or a node's to give (``core.variables.acts``):
        freezing, unfreezing, and redefining a space that exists with another definition."""
        if isinstance(command, Freeze | Unfreeze):
            return True
        if isinstance(command, DefineSpace):
            old = self._spaces.get(command.space.name)
            return old is not None and old.space != command.space
        return False

    # -- reads -----------------------------------------------------------------------------

    def spaces(self) -> list[str]:
        return sorted(self._spaces)

    def space(self, name: str) -> VariableSpace:
        return self._state(name).space

    def values(self, space: str) -> dict[str, Scalar]:
        return dict(self._state(space).values)

    def space_version(self, space: str) -> int:
        return self._state(space).version

    def frozen(self, space: str) -> frozenset[str]:
        return frozenset(self._state(space).frozen)

    def get(self, space: str, name: str) -> VariableView:
        st = self._state(space)
        if name not in st.values:
            raise not_found("variable", name, space=space)
        return VariableView(space=space, name=name, value=st.values[name],
                            version=st.versions[name], frozen=name in st.frozen)

    def history(self, space: str, name: str) -> list[HistoryEntry]:
        st = self._state(space)
        if name not in st.history:
            raise not_found("variable", name, space=space)
        return list(st.history[name])

    # -- commands --------------------------------------------------------------------------

    def _state(self, name: str) -> _SpaceState:
        try:
            return self._spaces[name]
        except KeyError:
            raise not_found("space", name) from None

    def _dispatch(self, cmd: Command) -> ApplyResult:
        if isinstance(cmd, DefineSpace):
            return self._define(cmd)
        if isinstance(cmd, SetValues):
            return self._set(cmd)
        return self._freeze(cmd, freeze=isinstance(cmd, Freeze))

    def _result(self, st: _SpaceState, changed: dict[str, Scalar]) -> ApplyResult:
        return ApplyResult(
            ok=True, version=self.version, space=st.space.name, space_version=st.version,
            changed=changed, values=dict(st.values), frozen=sorted(st.frozen),
        )

    def _commit(
        self, st: _SpaceState, new: dict[str, Scalar], actor: str | None, reason: str
    ) -> dict[str, Scalar]:
        """Record ``new`` as the space's values, bumping versions of what changed."""
        changed = {
            n: v for n, v in new.items()
            if n not in st.values or type(st.values[n]) is not type(v) or st.values[n] != v
        }
        if not changed:
            return changed
        self.version += 1
        st.version = self.version
        for n, v in changed.items():
            st.versions[n] = self.version
            st.history.setdefault(n, deque(maxlen=self.history_limit)).append(
                HistoryEntry(version=self.version, value=v, actor=actor, reason=reason)
            )
        st.values = new
        return changed

    def _define(self, cmd: DefineSpace) -> ApplyResult:
        space = cmd.space
        space.check_functions(self.registry)
        old = self._spaces.get(space.name)
        if old is None:
            st = _SpaceState(space, {}, self.history_limit)
            new = space.validate_config({}, self.registry)
            self._spaces[space.name] = st
            changed = self._commit(st, new, cmd.actor, "defined")
            return self._result(st, changed)
        if old.space == space:
            return self._result(old, {})
        kept = {
            n: v for n, v in old.values.items()
            if n in space and not isinstance(space.variable(n), CompositeVariable)
        }
        new = space.validate_config(kept, self.registry)
        for n in [n for n in old.values if n not in space]:
            del old.versions[n], old.history[n]
        old.frozen &= {v.name for v in space.free_variables}
        old.values = {n: v for n, v in old.values.items() if n in space}
        old.space = space
        changed = self._commit(old, new, cmd.actor, "redefined")
        if not changed:  # a definition change is a change even when no value moved
            self.version += 1
            old.version = self.version
        return self._result(old, changed)

    def _set(self, cmd: SetValues) -> ApplyResult:
        st = self._state(cmd.space)
        if cmd.expected_version is not None and cmd.expected_version != st.version:
            raise BrokerError(
                ErrorCode.CONFLICT,
                f"space {cmd.space!r} is at version {st.version}, not {cmd.expected_version}",
                {"space": cmd.space, "version": st.version, "expected": cmd.expected_version},
            )
        for name, value in cmd.values.items():
            if name in st.frozen and not _same(st.values.get(name), value):
                raise invalid(name, value, "frozen",
                              f"{name}: variable is frozen at {st.values[name]!r}",
                              space=cmd.space)
        merged: dict[str, Any] = {v.name: st.values[v.name] for v in st.space.free_variables}
        merged.update(cmd.values)
        new = st.space.validate_config(merged, self.registry)
        changed = self._commit(st, new, cmd.actor, cmd.reason)
        return self._result(st, changed)

    def _freeze(self, cmd: Freeze | Unfreeze, *, freeze: bool) -> ApplyResult:
        st = self._state(cmd.space)
        var = st.space.variable(cmd.variable)
        if isinstance(var, CompositeVariable):
            raise invalid(cmd.variable, st.values[cmd.variable], "computed",
                          f"{cmd.variable}: a composite is computed; freeze its inputs instead")
        if (cmd.variable in st.frozen) == freeze:
            return self._result(st, {})
        if freeze:
            st.frozen.add(cmd.variable)
        else:
            st.frozen.discard(cmd.variable)
        self.version += 1
        st.version = self.version
        return self._result(st, {})


def _dedupe_key(cmd: Command) -> str | None:
    """Command ids are remembered per actor, so nobody can claim another's id ahead of it
    (the actor is bound to the signer before a command gets here)."""
    if cmd.command_id is None:
        return None
    return cmd.command_id if cmd.actor is None else f"{cmd.actor}\x1f{cmd.command_id}"


def _same(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
