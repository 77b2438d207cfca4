"""Participant agents: they answer coordination questions with a pluggable decision hook.

``ParticipantAgent`` answers discovery broadcasts (``<p>.vote.discover.<capability>``)
and ``coord_info``. ``VoterAgent`` answers ``vote_request``; ``PredictorAgent`` answers
``predict_request``. Behaviour comes from kwargs (handy for demos and tests; each class's
``Settings`` lists them and the node checks them at start) or from overriding ``decide`` /
``predict``:

- ``choice="yes"``: always vote yes; ``rule="first"|"last"|"abstain"|"random"``;
  ``rule="keyword"`` with ``keywords={"approve": "yes"}`` (first word found in the
  proposal wins, else ``default`` or abstain);
- ``hook="pkg.mod:function"``: ``function(proposal, options) -> str | None``;
- ``label=...`` / ``value=...`` (predictors), or ``hook`` ``function(question)``;
- ``delay_ms``: think time before answering; ``fail="text"``: answer with an error.

Votes and predictions are the agent's acts, answered into the coordinator's inbox where
only nodes may publish (its node speaks for it; see ``broker_agents.gather``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from broker_agents.agent import Agent, AgentSettings, handler
from broker_agents.coord.wire import InfoAsk, PredictAnswer, PredictAsk, VoteAsk
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.discovery import ParticipantInfo, answer_discovery
from broker_agents.importer import import_from_string, parse_import_path


def load_hook(path: str | None) -> Callable[..., Any] | None:
    """The configured decision hook, or None when there is none."""
    if path is None:
        return None
    fn = import_from_string(path)
    if not callable(fn):
        raise ValueError(f"hook {path!r} is not a callable")
    return fn  # type: ignore[no-any-return]


def _import_path_shape(path: str) -> str:
    parse_import_path(path)
    return path


HookPath = Annotated[str, AfterValidator(_import_path_shape)]
"""``package.module:function``: its shape is checked with the config, the import happens
when the agent is built."""


class ParticipantSettings(AgentSettings):
    """What every participant understands; a participant subclass's ``Settings`` extends it."""

    delay_ms: float = Field(0.0, ge=0, description="think time before each answer "
                            "(demos, timeout tests); above 0, up to 64 answers run at once")
    fail: str | None = Field(None, description="answer every question with this text as a "
                             "'rejected' error")


class ParticipantAgent(Agent):
    """Base of agents that take part in coordination: discoverable, self-describing.

    Answers are computed inline (one at a time, no task per message: the fast path);
    with configured think time (``delay_ms``) up to 64 questions are answered at once.
    """

    max_concurrency: ClassVar[int] = 1
    Settings: ClassVar[type[ParticipantSettings]] = ParticipantSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self.settings = self.Settings.model_validate(config)
        if self.settings.delay_ms > 0:
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
        delay = self.settings.delay_ms / 1000
        if delay > 0:
            await asyncio.sleep(delay)  # sleep-ok: configured think time (demos, timeouts)
        if self.settings.fail:
            raise BrokerError(ErrorCode.REJECTED, self.settings.fail)


class VoterSettings(ParticipantSettings):
    choice: str | None = Field(None, description="always vote this (given as None: abstain); "
                               "overrides rule")
    rule: Literal["first", "last", "abstain", "random", "keyword"] = Field(
        "first", description="how to choose among the options when no choice or hook is set")
    keywords: dict[str, str] = Field(default_factory=dict, description="rule='keyword': word "
                                     "-> option; the first word found in the proposal wins")
    default: str | None = Field(None, description="rule='keyword': the vote when no keyword "
                                "matches (None abstains)")
    hook: HookPath | None = Field(None, description="'package.module:function', called as "
                                  "function(proposal, options) -> option or None; overrides "
                                  "the rest")
    seed: int | str | None = Field(None, description="rule='random': the seed (default: the "
                                   "agent id, so runs repeat)")


class VoterAgent(ParticipantAgent):
    capabilities: ClassVar[list[str]] = ["voter"]
    Settings: ClassVar[type[VoterSettings]] = VoterSettings
    settings: VoterSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self._hook = load_hook(self.settings.hook)
        seed = self.settings.seed
        self._rng = random.Random(agent_id if seed is None else seed)

    def decide(self, proposal: str, options: list[str] | None) -> str | None:
        """The vote (None abstains). Override, or configure with kwargs."""
        cfg = self.settings
        if self._hook is not None:
            out = self._hook(proposal, options)
            return None if out is None else str(out)
        if "choice" in cfg.model_fields_set:  # given, even as None (abstain)
            return cfg.choice
        rule = cfg.rule
        if rule == "abstain":
            return None
        if rule == "keyword":
            for word, option in cfg.keywords.items():
                if word.lower() in proposal.lower():
                    return option
            return cfg.default
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


class PredictorSettings(ParticipantSettings):
    label: str | None = Field(None, description="always answer this label")
    value: float | None = Field(None, description="always answer this number (when no label)")
    hook: HookPath | None = Field(None, description="'package.module:function', called as "
                                  "function(question) -> label, number or None; overrides "
                                  "label and value")


class PredictorAgent(ParticipantAgent):
    capabilities: ClassVar[list[str]] = ["predictor"]
    Settings: ClassVar[type[PredictorSettings]] = PredictorSettings
    settings: PredictorSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self._hook = load_hook(self.settings.hook)

    def predict(self, question: str) -> str | float | None:
        """A label (str), a number, or None to abstain. Override, or configure."""
        if self._hook is not None:
            out = self._hook(question)
            return out if out is None or isinstance(out, str) else float(out)
        if self.settings.label is not None:
            return self.settings.label
        return self.settings.value

    @handler(PredictAsk)
    async def predict_request(self, msg: PredictAsk) -> PredictAnswer:
        await self.think()
        out = self.predict(msg.question)
        if out is None:
            return PredictAnswer(abstain=True)
        if isinstance(out, str):
            return PredictAnswer(label=out)
        return PredictAnswer(value=out)
