"""How long a replayed launch's epochs take on the simulated clock, and where a preemption cuts it.

The timing model of :class:`~optuna_seer.backends.replay.ReplayBackend`: epoch ``e`` of a launch
with ``k`` workers takes ``epoch_seconds / s(k) * m`` simulated seconds, where ``s`` is the
scaling curve and ``m`` a straggler factor, log-normal with mean 1 and coefficient of variation
``straggler_cv``, drawn from ``(seed, trial number, epoch, k)``; with ``preemption_rate`` the
launch's node is preempted during each epoch with that probability, drawn from ``(seed, launch
number)``. Every draw is seeded, so a replay is deterministic whatever order launches happen in.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.planning.scaling import ScalingCurve


@dataclass(frozen=True)
class EpochTiming:
    """The simulated seconds of replayed epochs (see the module docstring).

    Example:
        >>> timing = EpochTiming(ScalingCurve.parse("linear"), epoch_seconds=60.0,
        ...                      straggler_cv=0.0, seed=0)
        >>> spec = LaunchSpec("study", "", 0, {}, rung=0, target_epochs=3, workers=2,
        ...                   checkpoint_uri="unused")
        >>> timing.schedule(spec, 0, at=10.0, first=1)
        ([40.0, 70.0], None)
    """

    scaling: ScalingCurve
    epoch_seconds: float
    straggler_cv: float
    seed: int
    preemption_rate: float = 0.0

    @property
    def sigma(self) -> float:
        """The log-normal sigma of the straggler factor (0: no stragglers)."""
        return math.sqrt(math.log1p(self.straggler_cv**2))

    def factor(self, trial_number: int, epoch: int, workers: int) -> float:
        """The straggler factor ``m`` of one epoch of the trial on ``workers`` workers."""
        sigma = self.sigma
        if sigma == 0.0:
            return 1.0
        rng = np.random.default_rng([self.seed, trial_number, epoch, workers])
        return float(rng.lognormal(-0.5 * sigma**2, sigma))

    def schedule(
        self, spec: LaunchSpec, launch: int, *, at: float, first: int
    ) -> tuple[list[float], float | None]:
        """When epochs ``first + 1`` to ``spec.target_epochs`` of launch number ``launch`` end,
        training from ``at`` on; and when its node is preempted (``None``: it is not), in which
        case the epochs listed are those it completed before."""
        per_epoch = self.epoch_seconds / self.scaling.speedup(spec.workers)
        preemption = np.random.default_rng([self.seed, 1, launch])
        ends: list[float] = []
        for epoch in range(first + 1, spec.target_epochs + 1):
            seconds = per_epoch * self.factor(spec.trial_number, epoch, spec.workers)
            if self.preemption_rate and preemption.random() < self.preemption_rate:
                return ends, at + seconds * preemption.random()
            at += seconds
            ends.append(at)
        return ends, None
