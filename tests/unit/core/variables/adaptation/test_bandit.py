"""Bandits for choice variables find the best arm."""

from __future__ import annotations

import random

import pytest

from broker_agents.core.variables.adaptation.bandit import Bandit

MEANS = [0.2, 0.5, 0.8, 0.4]
PULLS = 300


@pytest.mark.parametrize("algorithm", ["ucb1", "thompson"])
def test_bandit_picks_the_best_arm(algorithm: str) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        bandit = Bandit(len(MEANS), algorithm)  # type: ignore[arg-type]
        for _ in range(PULLS):
            arm = bandit.select(rng)
            bandit.update(arm, rng.gauss(MEANS[arm], 0.3))
        assert bandit.best() == 2, f"seed {seed}: {bandit.stats()}"
        assert bandit.pulls[2] == max(bandit.pulls), f"seed {seed}: {bandit.pulls}"


@pytest.mark.parametrize("algorithm", ["ucb1", "thompson"])
def test_every_arm_is_tried_before_any_is_repeated(algorithm: str) -> None:
    rng = random.Random(0)
    bandit = Bandit(5, algorithm)  # type: ignore[arg-type]
    seen = []
    for _ in range(5):
        arm = bandit.select(rng)
        seen.append(arm)
        bandit.update(arm, 1.0)
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_scores_on_any_scale_work_for_ucb1() -> None:
    rng = random.Random(5)
    bandit = Bandit(3, "ucb1")
    for _ in range(400):
        arm = bandit.select(rng)
        bandit.update(arm, -1000.0 + 100.0 * arm + rng.gauss(0, 30))
    assert bandit.best() == 2
