"""Participant agents: they answer coordination questions with a pluggable decision hook.

``ParticipantAgent`` answers discovery broadcasts (``<p>.vote.discover.<capability>``)
and ``coord_info``. ``VoterAgent`` answers ``vote_request``; ``PredictorAgent`` answers
``predict_request``. Behaviour comes from kwargs (handy for demos and tests) or from
overriding ``decide`` / ``predict``:

- ``choice="yes"``: always vote yes; ``rule="first"|"last"|"abstain"|"random"``;
  ``rule="keyword"`` with ``keywords={"approve": "yes"}`` (first word found in the
  proposal wins, else ``default`` or abstain);
- ``hook="pkg.mod:function"``: ``function(proposal, options) -> str | None``;
- ``label=...`` / ``value=...`` (predictors), or ``hook`` ``function(question)``;
- ``delay_ms``: think time before answering; ``fail="text"``: answer with an error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, ClassVar

from broker_agents.agent import Agent, handler
from broker_agents.coord.wire import InfoAsk, PredictAnswer, PredictAsk, VoteAsk
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.discovery import ParticipantInfo, answer_discovery
from broker_agents.importer import import_from_string


def load_hook(path: str) -> Callable[..., Any]:
    fn = import_from_string(path)
    if not callable(fn):
        raise ValueError(f"hook {path!r} is not a callable")
    return fn  # type: ignore[no-any-return]


class ParticipantAgent(Agent):
    """Base of agents that take part in coordination: discoverable, self-describing.

    Answers are computed inline (one at a time, no task per message: the fast path);
    with configured think time (``delay_ms``) up to 64 questions are answered at once.
    """

    max_concurrency: ClassVar[int] = 1

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        if float(config.get("delay_ms", 0)) > 0:
            vars(self)["max_concurrency"] = 64  # per instance: the runner reads it

    @property
    def public_key(self) -> str | None:
        """nkeys public key (the registry service publishes it in the agent's record)."""
        return None

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(agent_id=self.agent_id, node_id=self.ctx.node_id,
                               capabilities=self.all_capabilities(),
                               public_key=self.public_key)

    async def on_start(self) -> None:
        self._discovery = await answer_discovery(self.ctx.nc, self.ctx.subjects.vote,
                                                 self.all_capabilities(), self.info)

    async def on_stop(self) -> None:
        for sub in getattr(self, "_discovery", []):
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection already closing
                self.ctx.log.debug("unsubscribe failed", error=repr(exc))

    @handler(InfoAsk)
    async def coord_info(self, msg: InfoAsk) -> ParticipantInfo:
        return self.info()

    async def think(self) -> None:
        delay = float(self.config.get("delay_ms", 0)) / 1000
        if delay > 0:
            await asyncio.sleep(delay)  # sleep-ok: configured think time (demos, timeouts)
        fail = self.config.get("fail")
        if fail:
            raise BrokerError(ErrorCode.REJECTED, str(fail))


class VoterAgent(ParticipantAgent):
    capabilities: ClassVar[list[str]] = ["voter"]

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        hook = config.get("hook")
        self._hook = load_hook(hook) if isinstance(hook, str) else None
        self._rng = random.Random(config.get("seed", agent_id))

    def decide(self, proposal: str, options: list[str] | None) -> str | None:
        """The vote (None abstains). Override, or configure with kwargs."""
        cfg = self.config
        if self._hook is not None:
            out = self._hook(proposal, options)
            return None if out is None else str(out)
        if "choice" in cfg:
            return None if cfg["choice"] is None else str(cfg["choice"])
        rule = cfg.get("rule", "first")
        if rule == "abstain":
            return None
        if rule == "keyword":
            for word, option in dict(cfg.get("keywords", {})).items():
                if word.lower() in proposal.lower():
                    return str(option)
            default = cfg.get("default")
            return None if default is None else str(default)
        if not options:
            return None
        if rule == "last":
            return options[-1]
        if rule == "random":
            return self._rng.choice(options)
        return options[0]

    @handler(VoteAsk)
    async def vote_request(self, msg: VoteAsk) -> dict[str, Any]:
        """A ``VoteAnswer`` on the wire, built as a plain dict (the hot path)."""
        await self.think()
        choice = self.decide(msg.proposal, msg.options)
        if choice is None:
            return {"abstain": True}
        return {"choice": choice}


class PredictorAgent(ParticipantAgent):
    capabilities: ClassVar[list[str]] = ["predictor"]

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        hook = config.get("hook")
        self._hook = load_hook(hook) if isinstance(hook, str) else None

    def predict(self, question: str) -> str | float | None:
        """A label (str), a number, or None to abstain. Override, or configure."""
        if self._hook is not None:
            out = self._hook(question)
            return out if out is None or isinstance(out, str) else float(out)
        if self.config.get("label") is not None:
            return str(self.config["label"])
        if self.config.get("value") is not None:
            return float(self.config["value"])
        return None

    @handler(PredictAsk)
    async def predict_request(self, msg: PredictAsk) -> PredictAnswer:
        await self.think()
        out = self.predict(msg.question)
        if out is None:
            return PredictAnswer(abstain=True)
        if isinstance(out, str):
            return PredictAnswer(label=out)
        return PredictAnswer(value=out)
