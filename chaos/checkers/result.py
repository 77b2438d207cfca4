"""The one result shape every checker returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Verdict = Literal["ok", "violation", "unknown"]


class CheckResult(BaseModel):
    """A checker's verdict; ``violations`` are human-readable and name the op ids."""

    checker: str
    verdict: Verdict = "ok"
    violations: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @classmethod
    def of(cls, checker: str, violations: list[str], **details: Any) -> CheckResult:
        return cls(checker=checker, verdict="violation" if violations else "ok",
                   violations=violations, details=details)
