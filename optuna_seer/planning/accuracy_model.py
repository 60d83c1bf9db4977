"""Expected final accuracy of the configuration a successive-halving plan selects.

The planner's default objective is a proxy: the most configurations whose finalists are fully
trained. Whether a wider search, more rungs or another ``η`` buys more accuracy depends on
how learning curves cross, which only curves can say. :class:`AccuracyModel` holds a set of
recorded learning curves (a prior: another study's, or a benchmark's) and answers, for rung
shapes ``n_r`` trials to ``e_r`` cumulative epochs, the expected final score of the
configuration the rung decisions keep, by Monte Carlo over the curves:

1. draw ``n_0`` configurations from the recorded ones (with replacement: the prior stands for
   the search space's distribution of configurations);
2. at each rung end ``e_r`` (mapped onto the curves' epochs as the same fraction of the full
   training), keep the ``n_{r+1}`` with the best value there, as SEER's promotion does;
3. of the finalists, select the best by the mean over the last rung (SEER's selection rule;
   the last value in a one-rung plan), and count its *score*: a separate held-out figure
   when the curves have one (a test accuracy after all epochs), else its final value.

The mean over draws is the plan's expected accuracy; its standard error is reported too. The
draws are seeded, and the same draw indices are reused for every plan (common random
numbers), so two plans are compared on the same luck. Pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import itertools
import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.learning_curves import curve_matrix

Array = npt.NDArray[np.float64]
MAX_DRAW_VALUES = 4_000_000
"""The most configuration draws (draws × width) one estimate holds; wider plans use fewer
draws."""


@dataclass(frozen=True)
class Estimate:
    """An expected score and its Monte Carlo standard error."""

    mean: float
    stderr: float


@dataclass(frozen=True)
class AccuracyModel:
    """Recorded learning curves as a prior on what a plan's selected configuration scores.

    Args:
        curves: One sequence per configuration: its value (higher is better; negate a loss)
            after each epoch. Non-finite values (a diverged run) count as the worst value
            seen. Curves are cut to the shortest one's length.
        scores: Optional held-out score of each configuration after all epochs (e.g. its test
            accuracy); by default its last curve value.
        draws: Monte Carlo draws per estimate.
        seed: Seed of the draws.

    Example:
        >>> slow = [0.1 * e for e in range(1, 11)]          # ends best, starts worst
        >>> fast = [0.5 + 0.01 * e for e in range(1, 11)]   # starts best, ends at 0.6
        >>> model = AccuracyModel([slow, fast, fast, fast])
        >>> one_rung = model.expected_best([4], [10]).mean  # trains every one fully
        >>> early_cut = model.expected_best([4, 1], [1, 10]).mean  # keeps one after epoch 1
        >>> one_rung > early_cut
        True
    """

    curves: Sequence[Sequence[float]]
    scores: Sequence[float] | None = None
    draws: int = 400
    seed: int = 0
    _values: Array = field(init=False, repr=False, compare=False)
    _scores: Array = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = curve_matrix(self.curves, "an AccuracyModel")
        if self.scores is None:
            scores = values[:, -1].copy()
        else:
            scores = np.array(list(self.scores), dtype=float)
            if scores.shape != (len(values),):
                raise ValueError(
                    f"scores has {scores.size} values for {len(values)} curves: give one each."
                )
            if not np.isfinite(scores).all():
                raise ValueError("scores must all be finite.")
        for name, value, low in (("draws", self.draws, 10), ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be a whole number >= {low}.")
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_scores", scores)

    @property
    def epochs(self) -> int:
        """Epochs every curve has."""
        return int(self._values.shape[1])

    @property
    def n_curves(self) -> int:
        return int(self._values.shape[0])

    def curve_epoch(self, resource: int, max_epochs: int) -> int:
        """The curves' epoch (1-based) at the same fraction of training as ``resource`` of
        ``max_epochs`` (:func:`curve_epoch` for this model's curves).

        Example:
            >>> AccuracyModel([[0.0] * 40]).curve_epoch(9, 27)
            13
        """
        return curve_epoch(resource, max_epochs, self.epochs)

    def expected_best(self, n_trials: Sequence[int], resources: Sequence[int]) -> Estimate:
        """The expected score of the configuration that rungs of ``n_trials`` trials to
        ``resources`` cumulative epochs select (the last rung's end is full training).

        Raises:
            ValueError: The rungs are empty or do not shrink while epochs grow.
        """
        if not n_trials or len(n_trials) != len(resources):
            raise ValueError(
                f"n_trials={list(n_trials)} and resources={list(resources)} must be equally "
                "long and not empty."
            )
        if any(b > a for a, b in itertools.pairwise(n_trials)) or any(
            b <= a for a, b in itertools.pairwise(resources)
        ):
            raise ValueError(
                f"n_trials={list(n_trials)} must never grow and resources={list(resources)} "
                "must grow."
            )
        width = int(n_trials[0])
        draws = max(10, min(self.draws, MAX_DRAW_VALUES // max(1, width)))
        rng = np.random.default_rng([self.seed, width])
        alive = rng.integers(0, self.n_curves, size=(draws, width))
        # A tiny seeded jitter breaks ties at random, not by position.
        jitter = rng.random((draws, width)) * 1e-9
        ends = [self.curve_epoch(int(r), int(resources[-1])) for r in resources]
        rows = np.arange(draws)[:, None]
        for index in range(len(ends) - 1):
            keep = int(n_trials[index + 1])
            at_end = self._values[alive, ends[index] - 1] + jitter[:, : alive.shape[1]]
            order = np.argsort(-at_end, axis=1, kind="stable")[:, :keep]
            alive = alive[rows, order]
        # SEER's selection: the mean over the last rung; in a one-rung plan the last value.
        since = ends[-2] if len(ends) > 1 else ends[-1] - 1
        last_rung = self._values[:, since : ends[-1]].mean(axis=1)
        chosen = np.argmax(last_rung[alive] + jitter[:, : alive.shape[1]], axis=1)
        scores = self._scores[alive[np.arange(draws), chosen]]
        return Estimate(
            mean=float(scores.mean()),
            stderr=float(scores.std(ddof=1) / math.sqrt(draws)) if draws > 1 else 0.0,
        )


def curve_epoch(resource: int, max_epochs: int, epochs: int) -> int:
    """The epoch (1-based) of curves ``epochs`` long at the same fraction of training as
    ``resource`` of ``max_epochs``.

    Example:
        >>> [curve_epoch(e, 4, 40) for e in range(1, 5)], curve_epoch(1, 40, 4)
        ([10, 20, 30, 40], 1)
    """
    return min(epochs, max(1, round(resource * epochs / max_epochs)))


def percentile_proxy(width: int) -> float:
    """The proxy for expected accuracy when no curves are known: the expected percentile
    rank, among all configurations, of the best of ``width`` random ones, ``n / (n + 1)``,
    as if every rung decision were right. It grows with the width only, which is what the
    default planner maximises.

    Example:
        >>> percentile_proxy(1), percentile_proxy(99)
        (0.5, 0.99)
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r} must be a whole number >= 1.")
    return width / (width + 1)
