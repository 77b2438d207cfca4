"""Performance feedback as gradient ascent with momentum, the gradient estimated by SPSA.

The update, per variable, is exactly the documented one::

    g' = m * g + (1 - m) * grad
    v' = m * v + lr * g'
    value += v'

with ``value`` in unit coordinates (0 = min, 1 = max, so one learning rate suits variables of
any range) and ``grad`` the gradient of the objective score (we *maximise* the score).

Nobody hands us a gradient, so it is estimated with SPSA (simultaneous perturbation
stochastic approximation): draw a random sign ``d_i`` in {-1, +1} for every variable from the
injected ``random.Random``, run one trial at ``centre + c*d`` and one at ``centre - c*d``,
and estimate ``grad_i = (score_plus - score_minus) / (u_plus_i - u_minus_i)``. Two trials
per step whatever the dimensionality. ``u_plus``/``u_minus`` are the probe points after
they are clamped into range and snapped to the variable's grid (integer step, float
precision), so the estimate uses the points actually run; ``c`` is at least one grid step.

Tuning: ``g`` and ``v`` are two stacked moving averages, so the step lags the gradient and
high momentum destabilises quickly. On a quadratic with curvature ``H`` (in unit
coordinates) the deterministic iteration converges for ``lr*H`` up to about 1 at ``m=0.5``
but only up to about 0.02 at ``m=0.9``; SPSA's cross-terms add noise, so stay well inside.
Defaults (``lr=0.01, m=0.5, c=0.1``) suit objectives whose score changes by O(1-10) across
a variable's range.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from pydantic import BaseModel

from broker_agents.core.variables.adaptation.bounds import BoundsMode, apply_bounds

Snap = Callable[[float], float]


def momentum_step(g: float, v: float, grad: float, lr: float, m: float) -> tuple[float, float]:
    """``(g', v')`` for one variable; the caller adds ``v'`` to the value."""
    g2 = m * g + (1.0 - m) * grad
    v2 = m * v + lr * g2
    return g2, v2


class GradientStep(BaseModel):
    """Everything one update did, for the adaptation log."""

    gradient: dict[str, float]
    g: dict[str, float]
    v: dict[str, float]
    before: dict[str, float]
    after: dict[str, float]
    bounds: dict[str, str]


class SpsaOptimizer:
    """SPSA gradient ascent with momentum over named unit coordinates."""

    def __init__(
        self, centre: Mapping[str, float], *, learning_rate: float, momentum: float,
        perturbation: float, bounds: BoundsMode, snap: Mapping[str, Snap] | None = None,
        min_perturbation: Mapping[str, float] | None = None,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")
        if learning_rate <= 0 or not 0 < perturbation <= 0.5:
            raise ValueError("learning_rate must be > 0 and perturbation in (0, 0.5]")
        self.centre = dict(centre)
        self.lr = learning_rate
        self.m = momentum
        self.bounds: BoundsMode = bounds
        self._snap = dict(snap or {})
        floor = min_perturbation or {}
        self._c = {n: max(perturbation, floor.get(n, 0.0)) for n in self.centre}
        self.g = dict.fromkeys(self.centre, 0.0)
        self.v = dict.fromkeys(self.centre, 0.0)

    def snap(self, name: str, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        fn = self._snap.get(name)
        return fn(u) if fn else u

    def draw(self, rng: random.Random) -> dict[str, int]:
        return {n: rng.choice((-1, 1)) for n in self.centre}

    def probes(self, delta: Mapping[str, int]) -> tuple[dict[str, float], dict[str, float]]:
        """The two probe points (clamped and snapped) for the signs ``delta``."""
        plus = {n: self.snap(n, u + self._c[n] * delta[n]) for n, u in self.centre.items()}
        minus = {n: self.snap(n, u - self._c[n] * delta[n]) for n, u in self.centre.items()}
        return plus, minus

    def estimate(
        self, plus: Mapping[str, float], minus: Mapping[str, float], y_plus: float, y_minus: float
    ) -> dict[str, float]:
        grad: dict[str, float] = {}
        for n in self.centre:
            du = plus[n] - minus[n]
            grad[n] = 0.0 if du == 0 else (y_plus - y_minus) / du
        return grad

    def step(self, grad: Mapping[str, float]) -> GradientStep:
        """Apply one momentum update from ``grad`` and the bounds policy."""
        before = dict(self.centre)
        events: dict[str, str] = {}
        for n, u in before.items():
            self.g[n], self.v[n] = momentum_step(self.g[n], self.v[n], grad[n], self.lr, self.m)
            new, event = apply_bounds(u + self.v[n], self.bounds)
            if event is not None:
                events[n] = event
            if new is None:
                self.v[n] = 0.0
            else:
                self.centre[n] = new
        return GradientStep(
            gradient=dict(grad), g=dict(self.g), v=dict(self.v), before=before,
            after=dict(self.centre), bounds=events,
        )

    def reset(self, centre: Mapping[str, float]) -> None:
        """Jump to ``centre`` (an operator override) and forget the momentum."""
        self.centre = {n: centre[n] for n in self.centre}
        self.g = dict.fromkeys(self.centre, 0.0)
        self.v = dict.fromkeys(self.centre, 0.0)
