"""Subjects of the variables feature, built on the shared scheme.

    <p>.events.variables.<space>        a committed change (full values of the space)
    <p>.events.adaptation.<space>       one adaptation step (the engine's explanation)
    <p>.variables.<space>.feedback      feedback from agents (request/reply or publish)
"""

from __future__ import annotations

from broker_agents.subjects import Subjects, check_token


def changes(subjects: Subjects, space: str = "*") -> str:
    """Change events of one space (``*``: every space)."""
    return subjects.events("variables", space if space == "*" else check_token(space, "space"))


def adaptation(subjects: Subjects, space: str = "*") -> str:
    return subjects.events("adaptation", space if space == "*" else check_token(space, "space"))


def feedback(subjects: Subjects, space: str) -> str:
    return f"{subjects.prefix}.variables.{check_token(space, 'space')}.feedback"
