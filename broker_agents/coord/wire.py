"""Messages the coordinator exchanges with participant agents (typed, on their inboxes).

Every participant is asked with a typed envelope on ``<p>.agent.<id>``:
``vote_request`` -> ``VoteAnswer``, ``predict_request`` -> ``PredictAnswer``,
``coord_info`` -> ``ParticipantInfo`` (defined with discovery, ``broker_agents.discovery``).
PBFT replicas also take ``pbft_hello`` and ``pbft_setup`` there; their protocol traffic
then flows on ``<p>.vote.pbft.<group>.<member>``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from broker_agents.core.versioning import VersionedModel
from broker_agents.discovery import ParticipantInfo

_ID = Field(min_length=1, max_length=256)


class VoteAsk(VersionedModel):
    """Asks one participant to choose among ``options`` (or anything, if None)."""

    message_type: ClassVar[str] = "vote_request"

    vote_id: str = _ID
    proposal: str = Field(max_length=4096)
    options: list[str] | None = None
    level: int = Field(default=0, ge=0, description="hierarchical level (0 for flat votes)")
    cluster: str | None = Field(default=None, description="hierarchical cluster id")


class VoteAnswer(VersionedModel):
    """A participant's vote: a ``choice``, or ``abstain`` with an optional reason."""

    choice: str | None = Field(default=None, min_length=1, max_length=256)
    abstain: bool = False
    reason: str | None = Field(default=None, max_length=1024)


class PredictAsk(VersionedModel):
    message_type: ClassVar[str] = "predict_request"

    ensemble_id: str = _ID
    question: str = Field(max_length=4096)


class PredictAnswer(VersionedModel):
    """A prediction: a ``label`` or a ``value``; neither means an abstention."""

    label: str | None = Field(default=None, max_length=256)
    value: float | None = Field(default=None, allow_inf_nan=False)
    abstain: bool = False


class InfoAsk(VersionedModel):
    message_type: ClassVar[str] = "coord_info"


class PbftHello(VersionedModel):
    message_type: ClassVar[str] = "pbft_hello"


class PbftKeyInfo(ParticipantInfo):
    """A replica's answer to ``pbft_hello``: its signing key, certified by the node that
    hosts it (``certificate`` over ``core.identity.key_certificate_bytes``, made with the
    node's nkey, whose user JWT ``node_jwt`` the account issued). A key without a valid
    certificate proves nothing on a secured deployment and is refused."""

    certificate: str | None = Field(default=None, max_length=512)
    node_jwt: str | None = Field(default=None, max_length=8192)


class PbftSetup(VersionedModel):
    """Forms a PBFT group at a replica and hands it the client's signed request."""

    message_type: ClassVar[str] = "pbft_setup"

    group_id: str = _ID
    replicas: list[str] = Field(min_length=4)
    f: int = Field(ge=1)
    public_keys: dict[str, str] = Field(description="member/client id -> nkeys public key")
    client: str = _ID
    request: dict[str, Any] = Field(description="the client's signed pbft Request")
    tick_ms: float = Field(default=10.0, gt=0)
    view_timeout_ticks: int = Field(default=20, ge=2)
    ttl_ms: int = Field(default=5000, ge=1)


class PbftSetupAck(VersionedModel):
    group_id: str
    replica: str
    primary: str


class PbftStatusAsk(VersionedModel):
    message_type: ClassVar[str] = "pbft_status"


class LeaderStatusAsk(VersionedModel):
    message_type: ClassVar[str] = "leader_status"
