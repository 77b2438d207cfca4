"""Bandits for choice variables: UCB1 and Thompson sampling.

Scores are unbounded reals (they come from an objective), so both normalise: UCB1 rescales
each arm's mean by the smallest and largest score seen so far before adding the exploration
bonus ``c * sqrt(ln N / n_i)``; Thompson sampling models each arm's score as Gaussian and
draws from ``Normal(mean_i, s / sqrt(n_i + 1))`` where ``s`` is the pooled standard
deviation of all scores seen (1 before there are two). Every arm is tried once first, in a
random order. Ties are broken with the injected ``random.Random``; nothing else is random
in UCB1.
"""

from __future__ import annotations

import math
import random
from typing import Literal

from pydantic import BaseModel

BanditAlgorithm = Literal["ucb1", "thompson"]


class ArmStats(BaseModel):
    pulls: int
    mean: float


class Bandit:
    def __init__(
        self, arms: int, algorithm: BanditAlgorithm = "thompson", *, exploration: float = 1.4142
    ) -> None:
        if arms < 1:
            raise ValueError("a bandit needs at least one arm")
        self.algorithm: BanditAlgorithm = algorithm
        self.exploration = exploration
        self.pulls = [0] * arms
        self.sums = [0.0] * arms
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0  # Welford accumulators over all scores
        self._lo = math.inf
        self._hi = -math.inf

    def select(self, rng: random.Random) -> int:
        untried = [i for i, p in enumerate(self.pulls) if p == 0]
        if untried:
            return rng.choice(untried)
        values = self._ucb() if self.algorithm == "ucb1" else self._thompson(rng)
        best = max(values)
        return rng.choice([i for i, v in enumerate(values) if v == best])

    def update(self, arm: int, score: float) -> None:
        self.pulls[arm] += 1
        self.sums[arm] += score
        self._n += 1
        d = score - self._mean
        self._mean += d / self._n
        self._m2 += d * (score - self._mean)
        self._lo = min(self._lo, score)
        self._hi = max(self._hi, score)

    def mean(self, arm: int) -> float:
        return self.sums[arm] / self.pulls[arm] if self.pulls[arm] else 0.0

    def best(self) -> int:
        """The arm with the best mean so far (ties: the lowest index)."""
        tried = [i for i, p in enumerate(self.pulls) if p]
        return max(tried, key=self.mean) if tried else 0

    def stats(self) -> list[ArmStats]:
        return [ArmStats(pulls=p, mean=self.mean(i)) for i, p in enumerate(self.pulls)]

    def _ucb(self) -> list[float]:
        span = self._hi - self._lo
        total = sum(self.pulls)
        out = []
        for i, p in enumerate(self.pulls):
            norm = 0.5 if span == 0 else (self.mean(i) - self._lo) / span
            out.append(norm + self.exploration * math.sqrt(math.log(total) / p))
        return out

    def _thompson(self, rng: random.Random) -> list[float]:
        sd = math.sqrt(self._m2 / (self._n - 1)) if self._n > 1 else 1.0
        sd = sd if sd > 0 else 1e-9
        return [rng.gauss(self.mean(i), sd / math.sqrt(p + 1)) for i, p in enumerate(self.pulls)]
