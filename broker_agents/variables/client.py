"""``Variables(nc, group)``: define, set, freeze and read cluster-wide variables.

Writes are proposals to the consensus group (through ``RaftClient``: one request id across
retries, so a retried write applies once); ``get``/``values``/``history`` are linearizable
reads through the group. For reading on a hot path use ``read_model()``: a local cache kept
current by change events. A rejected command raises ``BrokerError`` -- for a validation
failure with ``code == "validation_error"`` and ``details`` naming ``variable``, ``value``
and ``constraint``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
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
from broker_agents.variables.models import FeedbackAck, FeedbackReport, SpaceValues
from broker_agents.variables.readmodel import ReadModel

DEFAULT_GROUP = "variables"


class Variables:
    def __init__(self, nc: Any, group: str = DEFAULT_GROUP,
                 subjects: Subjects = Subjects(), *, timeout: float = 10.0) -> None:  # noqa: B008
        self.nc, self.group, self.subjects, self.timeout = nc, group, subjects, timeout
        self.raft = RaftClient(nc, group, subjects)

    # -- writes --------------------------------------------------------------------------

    async def _propose(self, command: DefineSpace | SetValues | Freeze | Unfreeze) -> ApplyResult:
        result = await self.raft.propose(command.model_dump(mode="json", exclude_none=True),
                                         request_id=command.command_id, timeout=self.timeout)
        return ApplyResult.model_validate(result)

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
        return list((await self._read({"op": "spaces"}))["spaces"])

    async def space(self, name: str) -> VariableSpace:
        return VariableSpace.model_validate((await self._read({"op": "space", "space": name}))
                                            ["space"])

    async def values(self, space: str) -> SpaceValues:
        return SpaceValues.model_validate(await self._read({"op": "values", "space": space}))

    async def state(self) -> dict[str, SpaceValues]:
        got = await self._read({"op": "state"})
        return {n: SpaceValues.model_validate(v) for n, v in got["spaces"].items()}

    async def get(self, space: str, name: str) -> VariableView:
        return VariableView.model_validate(
            await self._read({"op": "get", "space": space, "name": name}))

    async def history(self, space: str, name: str) -> list[HistoryEntry]:
        got = await self._read({"op": "history", "space": space, "name": name})
        return [HistoryEntry.model_validate(e) for e in got["history"]]

    # -- feedback and the local read model -----------------------------------------------

    async def feedback(self, space: str, *, version: int | None = None,
                       reward: float | None = None, latency: float | None = None,
                       cost: float | None = None, quality: float | None = None,
                       source: str | None = None, wait: bool = True,
                       timeout: float = 2.0) -> FeedbackAck | None:
        """Report feedback; with ``wait`` the active engine's acknowledgement is returned."""
        report = FeedbackReport(space=space, version=version, reward=reward, latency=latency,
                                cost=cost, quality=quality, source=source)
        subject = self.subjects.variable_feedback(space)
        if not wait:
            await self.nc.publish(subject, encode(report))
            return None
        try:
            msg = await nats_request(self.nc, subject, encode(report), timeout=timeout)
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
        return FeedbackAck.model_validate(body)

    def read_model(self, spaces: Iterable[str] | None = None, **kw: Any) -> ReadModel:
        """A local, event-updated cache (call ``await rm.start()``)."""
        return ReadModel(self.nc, self.group, self.subjects, spaces=spaces, **kw)
