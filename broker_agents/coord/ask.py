"""Ask many agents the same typed question in parallel, each with a deadline.

One envelope is encoded once and sent to every inbox (message ids are per-receiver, so a
shared id is harmless). Each participant yields exactly one outcome: its reply payload, or
a ``BrokerError`` (``timeout``, ``unavailable`` when nobody listens, or the error the agent
replied). Nothing is dropped: the caller turns every outcome into a reported answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects

Outcome = dict[str, Any] | BrokerError


async def ask_one(nc: NATS, subject: str, data: bytes, timeout: float) -> Outcome:
    try:
        reply = await nc.request(subject, data, timeout=timeout)
    except nats.errors.NoRespondersError:
        return BrokerError(ErrorCode.UNAVAILABLE, "no agent is listening", {"subject": subject})
    except nats.errors.TimeoutError:
        return BrokerError(ErrorCode.TIMEOUT, f"no answer within {timeout:g}s")
    except Exception as exc:  # connection trouble: report it for this participant only
        return BrokerError(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
    try:
        payload = codec.decode(reply.data, reply.headers)
    except BrokerError as exc:
        return exc
    err = BrokerError.from_payload(payload)
    if err is not None:
        return err
    if not isinstance(payload, dict):
        return BrokerError(ErrorCode.MALFORMED, "answer is not an object")
    return payload


async def ask_all(nc: NATS, subjects: Subjects, agent_ids: Sequence[str], msg: BaseModel,
                  timeout: float) -> dict[str, Outcome]:
    """agent id -> reply payload or error, for every id, within ``timeout`` seconds."""
    data = codec.encode(envelope(msg))
    outcomes = await asyncio.gather(
        *(ask_one(nc, subjects.agent(a), data, timeout) for a in agent_ids))
    return dict(zip(agent_ids, outcomes, strict=True))


def parse_answer(outcome: Outcome, model: type[Any]) -> Any:
    """Validate a reply payload against ``model``; garbage becomes a ``malformed`` error."""
    if isinstance(outcome, BrokerError):
        return outcome
    try:
        return model.model_validate(outcome)
    except Exception as exc:
        return BrokerError(ErrorCode.MALFORMED, f"answer is not a valid {model.__name__}: "
                           f"{str(exc).splitlines()[0]}")
