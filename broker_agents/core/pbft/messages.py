"""PBFT wire messages (pydantic), their canonical signed bytes, and request digests.

Every message names its signer (``sender``; ``client`` for a request) and carries a
base64 Ed25519 signature over ``signable(msg)``: the sorted-key compact JSON of every
field except the top-level signature (nested messages keep theirs, so a certificate is
self-verifying). A request is signed by its client, so no replica can invent one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from broker_agents.core.versioning import OpenModel, VersionedModel

NULL_DIGEST = "null"
"""Digest of the null request a new primary uses to fill a sequence gap."""

_ID = Field(min_length=1, max_length=256)


class _Msg(VersionedModel):
    """Versioned; a newer replica's fields are kept (and covered by its signature)."""

    model_config = ConfigDict(frozen=True)

    signature: str = Field(default="", max_length=256, description="base64 Ed25519 signature")


class Request(_Msg):
    """A client's operation to order; ``request_id`` is unique per client."""

    type: Literal["request"] = "request"
    client: str = _ID
    request_id: str = _ID
    operation: str = Field(max_length=65536, description="the value to agree on")


class PrePrepare(_Msg):
    """Primary assigns ``seq`` to ``request`` (None for the null request) in ``view``."""

    type: Literal["pre_prepare"] = "pre_prepare"
    view: int = Field(ge=0)
    seq: int = Field(ge=1)
    digest: str = Field(max_length=128)
    request: Request | None = None
    sender: str = _ID


class Prepare(_Msg):
    type: Literal["prepare"] = "prepare"
    view: int = Field(ge=0)
    seq: int = Field(ge=1)
    digest: str = Field(max_length=128)
    sender: str = _ID


class Commit(_Msg):
    type: Literal["commit"] = "commit"
    view: int = Field(ge=0)
    seq: int = Field(ge=1)
    digest: str = Field(max_length=128)
    sender: str = _ID


class PreparedCert(OpenModel):
    """Proof that ``seq`` prepared: the pre-prepare and 2f matching prepares."""

    model_config = ConfigDict(frozen=True)

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


class CommitCert(OpenModel):
    """Proof that ``seq`` committed: the pre-prepare and 2f+1 matching commits."""

    model_config = ConfigDict(frozen=True)

    pre_prepare: PrePrepare
    commits: tuple[Commit, ...]


class ViewChange(_Msg):
    """Sender moves to ``new_view`` and reports every sequence it has prepared."""

    type: Literal["view_change"] = "view_change"
    new_view: int = Field(ge=1)
    last_executed: int = Field(ge=0)
    prepared: tuple[PreparedCert, ...] = ()
    sender: str = _ID


class NewView(_Msg):
    """New primary's proof (2f+1 view changes) and the pre-prepares it re-issues."""

    type: Literal["new_view"] = "new_view"
    view: int = Field(ge=1)
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: str = _ID


class Fetch(_Msg):
    """A lagging replica asks for commit certificates after ``last_executed``."""

    type: Literal["fetch"] = "fetch"
    view: int = Field(ge=0)
    last_executed: int = Field(ge=0)
    sender: str = _ID


class CatchUp(_Msg):
    """Commit certificates answering a fetch (or a lagging view change)."""

    type: Literal["catch_up"] = "catch_up"
    certs: tuple[CommitCert, ...]
    sender: str = _ID


class Reply(_Msg):
    """A replica's answer to the client: the request was decided at ``seq``."""

    type: Literal["reply"] = "reply"
    view: int = Field(ge=0)
    seq: int = Field(ge=1)
    client: str = _ID
    request_id: str = _ID
    operation: str
    sender: str = _ID


PbftMessage = Annotated[
    Request | PrePrepare | Prepare | Commit | ViewChange | NewView | Fetch | CatchUp | Reply,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[PbftMessage] = TypeAdapter(PbftMessage)


def parse_message(payload: Any) -> PbftMessage:
    """Decode a wire dict into a message (raises pydantic ValidationError on garbage)."""
    return _ADAPTER.validate_python(payload)


def signer_of(msg: PbftMessage) -> str:
    return msg.client if isinstance(msg, Request) else msg.sender


def signable(msg: BaseModel) -> bytes:
    """Canonical bytes a signature covers: everything but the top-level signature."""
    body = msg.model_dump(mode="json", exclude={"signature"})
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def digest(request: Request | None) -> str:
    """Content digest of a request (signature excluded); NULL_DIGEST for the null request."""
    if request is None:
        return NULL_DIGEST
    return hashlib.sha256(signable(request)).hexdigest()
