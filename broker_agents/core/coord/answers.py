"""What one participant answered: a choice, an abstention, a timeout or an error.

The driver asks every participant and records exactly one ``Answer`` per participant; a
participant with no recorded answer is reported as a timeout. Nothing is ever silently
counted: abstentions, timeouts and errors are listed per participant in every result.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from broker_agents.core.versioning import OpenModel, VersionedModel


class AnswerStatus(StrEnum):
    CHOICE = "choice"
    ABSTAIN = "abstain"
    TIMEOUT = "timeout"
    ERROR = "error"


class Answer(VersionedModel):
    """One participant's answer; ``choice`` is set exactly when ``status`` is ``choice``."""

    model_config = ConfigDict(frozen=True)

    status: AnswerStatus = Field(description="choice, abstain, timeout or error")
    choice: str | None = Field(
        default=None, min_length=1, max_length=256, description="the option voted for"
    )
    error: str | None = Field(
        default=None, max_length=1024, description="why the answer is an error"
    )

    @model_validator(mode="after")
    def _choice_iff_status_choice(self) -> Answer:
        if (self.status is AnswerStatus.CHOICE) != (self.choice is not None):
            raise ValueError("choice must be set exactly when status is 'choice'")
        return self

    @classmethod
    def vote(cls, choice: str) -> Answer:
        return cls(status=AnswerStatus.CHOICE, choice=choice)

    @classmethod
    def abstain(cls) -> Answer:
        return cls(status=AnswerStatus.ABSTAIN)

    @classmethod
    def timeout(cls) -> Answer:
        return cls(status=AnswerStatus.TIMEOUT)

    @classmethod
    def failed(cls, error: str) -> Answer:
        return cls(status=AnswerStatus.ERROR, error=error)


class ParticipantAnswer(OpenModel):
    """A participant's answer as reported in a result, with the weight it carried."""

    model_config = ConfigDict(frozen=True)

    participant: str = Field(description="participant (agent) id")
    status: AnswerStatus = Field(description="choice, abstain, timeout or error")
    choice: str | None = Field(default=None, description="the option voted for, if any")
    error: str | None = Field(default=None, description="error text, if status is error")
    weight: float = Field(ge=0, description="weight the answer carried (1 unless weighted)")
