"""Predict a trial's final value from the start of its learning curve, with its uncertainty.

Successive halving promotes on the value at a rung's end, which assumes curves do not cross.
:class:`CurvePrior` predicts where a partial curve ends instead: it holds complete curves (a
prior: another study's, a benchmark's, or this study's finished trials) and, for a trial that
reported values up to epoch ``e`` of ``max_epochs``,

1. weighs every prior curve by how closely its own first ``e`` epochs follow the trial's
   (a Gaussian kernel of the root-mean-square distance, ``bandwidth`` wide);
2. predicts that the trial gains, from its last value to the end of training, what the
   similar curves gained over the same stretch: ``y_e + Σ w_j (y_j(E) − y_j(e)) / Σ w_j``;
3. reports the weighted spread of those predictions as the uncertainty.

Epochs are matched as fractions of training, so a prior recorded for 40 epochs serves a study
of 27. The prediction is the same whichever way the metric points (a loss or an accuracy);
only ``optimism`` and diverged values (non-finite ones count as the lowest finite value) read
it as higher-is-better. Pure: numpy only.

The rule ranks by ``mean + optimism × sd``: ``optimism > 0`` keeps uncertain trials alive
(late bloomers), ``< 0`` prefers the safe ones. Measured on the benchmark curves
(``benchmarks/rung_rules.py``), neither beats SEER's rung-end rule; it is opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import itertools
import math

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def curve_matrix(curves: Sequence[Sequence[float]], owner: str, min_epochs: int = 1) -> Array:
    """Curves as one array of ``(configurations, epochs)``, cut to the shortest curve; a
    non-finite value (a diverged epoch) becomes the lowest finite value of all.

    Raises:
        ValueError: No curve, one shorter than ``min_epochs``, or no finite value at all;
            the message starts with ``owner``, the object being built.

    Example:
        >>> curve_matrix([[0.2, float("nan"), 0.9], [0.5, 0.6]], "a prior")
        array([[0.2, 0.2],
               [0.5, 0.6]])
    """
    rows = [list(c) for c in curves]
    shortest = min((len(r) for r in rows), default=0)
    if not rows or shortest < min_epochs:
        raise ValueError(
            f"{owner} needs one or more curves of {min_epochs} or more epochs, got "
            f"{len(rows)} curve(s), the shortest of {shortest}."
        )
    values = np.array([r[:shortest] for r in rows], dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"{owner}: every value of every curve is non-finite (NaN or inf).")
    values[~finite] = float(values[finite].min())
    return values


@dataclass(frozen=True)
class Prediction:
    """A predicted final value and its standard deviation."""

    mean: float
    sd: float


@dataclass(frozen=True)
class CurvePrior:
    """Complete learning curves that partial ones are extrapolated by.

    Args:
        curves: One sequence of per-epoch values of the study's metric per configuration;
            non-finite values count as the lowest finite one. Cut to the shortest curve.
        bandwidth: Width of the similarity kernel, in the curves' units (e.g. 0.05 of
            accuracy): smaller trusts the closest curves only.
        optimism: Ranking score ``mean + optimism × sd`` (0: the predicted mean).

    Example:
        >>> prior = CurvePrior([[0.2, 0.5, 0.9], [0.6, 0.65, 0.7]], bandwidth=0.05)
        >>> late = prior.predict([1], [0.25], max_epochs=3)   # starts like the late bloomer
        >>> early = prior.predict([1], [0.55], max_epochs=3)  # starts like the early plateau
        >>> round(late.mean, 2), round(early.mean, 2)
        (0.95, 0.65)
    """

    curves: Sequence[Sequence[float]]
    bandwidth: float = 0.05
    optimism: float = 0.0
    _values: Array = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = curve_matrix(self.curves, "a CurvePrior", min_epochs=2)
        bandwidth = self.bandwidth
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
            raise TypeError(f"bandwidth={bandwidth!r} must be a number.")
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth={bandwidth!r} must be > 0 and finite, e.g. 0.05.")
        if (
            isinstance(self.optimism, bool)
            or not isinstance(self.optimism, (int, float))
            or not math.isfinite(self.optimism)
        ):
            raise ValueError(f"optimism={self.optimism!r} must be a finite number, e.g. 0 or 1.")
        object.__setattr__(self, "_values", values)

    @property
    def epochs(self) -> int:
        """Epochs every prior curve has."""
        return int(self._values.shape[1])

    def _index(self, step: int, max_epochs: int) -> int:
        """The prior's 0-based epoch index at the same fraction of training as ``step``."""
        return min(self.epochs, max(1, round(step * self.epochs / max_epochs))) - 1

    def predict(self, steps: Sequence[int], values: Sequence[float], max_epochs: int) -> Prediction:
        """The final value (after ``max_epochs``) of a trial that reported ``values`` at
        ``steps`` (cumulative epochs, increasing), and its uncertainty.

        Raises:
            ValueError: No values, steps not increasing or past ``max_epochs``, or a value
                that is not finite.
        """
        if not steps or len(steps) != len(values):
            raise ValueError(
                f"steps={list(steps)!r:.60} and values must be equally long and not empty."
            )
        if any(b <= a for a, b in itertools.pairwise(steps)) or steps[0] < 1:
            raise ValueError(f"steps={list(steps)!r:.60} must be increasing epochs >= 1.")
        if steps[-1] > max_epochs:
            raise ValueError(f"step {steps[-1]} is past max_epochs={max_epochs}.")
        own = np.asarray(values, dtype=float)
        if not np.isfinite(own).all():
            raise ValueError(f"values={list(values)!r:.60} must all be finite.")
        columns = [self._index(s, max_epochs) for s in steps]
        prefix = self._values[:, columns]
        distance = np.sqrt(((prefix - own) ** 2).mean(axis=1))
        log_weight = -0.5 * (distance / self.bandwidth) ** 2
        weight = np.exp(log_weight - log_weight.max())
        gain = self._values[:, -1] - self._values[:, columns[-1]]
        predicted = own[-1] + gain
        total = float(weight.sum())
        mean = float((weight * predicted).sum() / total)
        sd = math.sqrt(max(0.0, float((weight * (predicted - mean) ** 2).sum() / total)))
        return Prediction(mean=mean, sd=sd)

    def score(
        self,
        steps: Sequence[int],
        values: Sequence[float],
        max_epochs: int,
        *,
        maximize: bool = True,
    ) -> float:
        """The ranking score: the predicted mean, ``optimism`` standard deviations towards
        better (up when maximising, down when minimising)."""
        prediction = self.predict(steps, values, max_epochs)
        score = prediction.mean + (1.0 if maximize else -1.0) * self.optimism * prediction.sd
        # Rounded: curves with the same evidence tie exactly, not by float noise in weights.
        return round(score, 12)
