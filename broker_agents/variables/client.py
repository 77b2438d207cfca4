"""``Variables(nc, group)``: define, set, freeze and read cluster-wide variables.

Writes are proposals to the consensus group (through ``RaftClient``: one request id across
retries, so a retried write applies once), signed by the connection's user: the history
records the signer as the actor (``actor=`` asks to act for someone else, which only
admins and nodes may), and freeze, unfreeze and redefining a space are admins' and
nodes' (``core.variables.acts``); ``get``/``values``/``history`` are linearizable
reads through the group. For reading on a hot path use ``read_model()``: a local cache kept
current by change events. A rejected command raises ``BrokerError`` -- for a validation
failure with ``code == "validation_error"`` and ``details`` naming ``variable``, ``value``
and ``constraint``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ValidationError

from broker_agents import identity
from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError
from broker_agents.core.variables.commands import (
    ApplyResult,
    DefineSpace,
    Freeze,
    HistoryEntry,
    SetValues,
    Unfreeze,
    VariableView,
)
from broker_agents.core.variables.functions import Scalar
from broker_agents.core.variables.space import VariableSpace
from broker_agents.raft.client import RaftClient
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from broker_agents.variables.acts import proposal
from broker_agents.variables.metrics import SKIPPED, skipped_record
from broker_agents.variables.models import FeedbackAck, FeedbackReport, SpaceValues
from broker_agents.variables.readmodel import ReadModel

DEFAULT_GROUP = "variables"


class Variables:
    def __init__(self, nc: Any, group: str = DEFAULT_GROUP,
                 subjects: Subjects = Subjects(), *, timeout: float = 10.0) -> None:  # noqa: B008
        self.nc, self.group, self.subjects, self.timeout = nc, group, subjects, timeout
        self.raft = RaftClient(nc, group, subjects)
        self.skipped: dict[str, str] = {}  # space -> why, from the last ``state()``

    # -- writes --------------------------------------------------------------------------

    async def _propose(self, command: DefineSpace | SetValues | Freeze | Unfreeze) -> ApplyResult:
        if command.command_id is None:  # names the act too: a replay of it is a duplicate
            command = command.model_copy(update={"command_id": uuid.uuid4().hex})
        result = await self.raft.propose(proposal(self.nc, self.group, command),
                                         request_id=command.command_id, timeout=self.timeout)
        return _parsed(ApplyResult, result, "apply result")

    async def define_space(self, space: VariableSpace | Mapping[str, Any], *,
                           actor: str | None = None) -> ApplyResult:
        """Create (or redefine) a space; a bad definition raises ``validation_error``."""
        return await self._propose(DefineSpace(space=VariableSpace.parse(space), actor=actor))

    async def set(self, space: str, values: Mapping[str, Scalar], *,
                  expected_version: int | None = None, actor: str | None = None,
                  reason: str = "", command_id: str | None = None) -> ApplyResult:
        """Commit new values; with ``expected_version`` only if the space is still there."""
        return await self._propose(SetValues(
            space=space, values=dict(values), expected_version=expected_version, actor=actor,
            reason=reason, command_id=command_id))

    async def freeze(self, space: str, variable: str, *, actor: str | None = None) -> ApplyResult:
        """Stop every change of ``variable`` (the engine's and anyone's) until unfrozen."""
        return await self._propose(Freeze(space=space, variable=variable, actor=actor))

    async def unfreeze(self, space: str, variable: str, *,
                       actor: str | None = None) -> ApplyResult:
        return await self._propose(Unfreeze(space=space, variable=variable, actor=actor))

    # -- linearizable reads --------------------------------------------------------------

    async def _read(self, query: dict[str, Any]) -> Any:
        return await self.raft.read(query, timeout=self.timeout)

    async def spaces(self) -> list[str]:
        return _parsed(_Spaces, await self._read({"op": "spaces"}), "spaces").spaces

    async def space(self, name: str) -> VariableSpace:
        got = _parsed(_Definition, await self._read({"op": "space", "space": name}), "space")
        return got.space

    async def values(self, space: str) -> SpaceValues:
        return _parsed(SpaceValues, await self._read({"op": "values", "space": space}),
                       "values")

    async def state(self) -> dict[str, SpaceValues]:
        """Every space's values; a space whose record does not validate is skipped (it is
        then in ``skipped``, counted and logged with its name) instead of failing all."""
        got = _parsed(_State, await self._read({"op": "state"}), "state")
        self.skipped = {}
        out: dict[str, SpaceValues] = {}
        for name, record in got.spaces.items():
            try:
                values = SpaceValues.model_validate(record)
                if values.space != name:
                    raise ValueError(f"the record of {name!r} is {values.space!r}'s")
            except ValueError as exc:  # pydantic's ValidationError is one
                self.skipped[name] = skipped_record("state", name, exc)
                continue
            out[name] = values
        return out

    async def get(self, space: str, name: str) -> VariableView:
        return _parsed(VariableView, await self._read(
            {"op": "get", "space": space, "name": name}), "variable")

    async def history(self, space: str, name: str) -> list[HistoryEntry]:
        got = _parsed(_History, await self._read(
            {"op": "history", "space": space, "name": name}), "history")
        return got.history

    # -- feedback and the local read model -----------------------------------------------

    async def feedback(self, space: str, *, version: int | None = None,
                       reward: float | None = None, latency: float | None = None,
                       cost: float | None = None, quality: float | None = None,
                       source: str | None = None, wait: bool = True,
                       timeout: float = 2.0) -> FeedbackAck | None:
        """Report feedback; with ``wait`` the active engine's acknowledgement is returned.
        The report is signed: its ``source`` is the signer (a node may name an agent it
        hosts); an unsigned report is anonymous."""
        report = FeedbackReport(space=space, version=version, reward=reward, latency=latency,
                                cost=cost, quality=quality, source=source)
        subject = self.subjects.variable_feedback(space)
        data = encode(report)
        signer = identity.identity_of(self.nc).signer
        acting_for = source if signer is not None and source != signer.name else None
        if not wait:
            await self.nc.publish(subject, data, headers=identity.act_headers(
                self.nc, subject, data, acting_for))
            return None
        try:
            msg = await nats_request(self.nc, subject, data, timeout=timeout, signed=True,
                                     acting_for=acting_for)
        except NoRespondersError as exc:
            raise BrokerError(ErrorCode.UNAVAILABLE, f"no adaptation engine for {space!r}",
                              {"space": space}) from exc
        except NatsTimeout as exc:
            raise BrokerError(ErrorCode.TIMEOUT, f"no engine acknowledged feedback for "
                              f"{space!r} within {timeout}s", {"space": space}) from exc
        body = decode(msg.data, msg.headers)
        err = BrokerError.from_payload(body)
        if err is not None:
            raise err
        return _parsed(FeedbackAck, body, "feedback acknowledgement")

    def read_model(self, spaces: Iterable[str] | None = None, **kw: Any) -> ReadModel:
        """A local, event-updated cache (call ``await rm.start()``)."""
        return ReadModel(self.nc, self.group, self.subjects, spaces=spaces, **kw)


class _Spaces(BaseModel):
    spaces: list[str]


class _Definition(BaseModel):
    space: VariableSpace


class _State(BaseModel):
    spaces: dict[str, Any]


class _History(BaseModel):
    history: list[HistoryEntry]


M = TypeVar("M", bound=BaseModel)


def _parsed(model: type[M], data: Any, what: str) -> M:
    """A reply from the group as ``model``; one that is not is the group's fault
    (``malformed``), never an exception from deep inside a caller (the CLI's, say)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        SKIPPED.labels("reply").inc()
        raise RemoteProtocolError(ErrorCode.MALFORMED, f"the group's {what} reply is "
                                  f"malformed: {exc.errors()[0]['msg']}",
                                  {"reply": what}) from None
