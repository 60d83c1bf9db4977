"""A rung schedule's time and cost at a quantile of its stragglers, for planning that holds.

:func:`~optuna_seer.planning.cost_model.schedule` times every epoch at its mean. Real epochs
vary: the profile's ``epoch_cv`` is the relative spread of one epoch's time at ``k`` workers,
and a rung's wave ends with its *slowest* trial, so even the mean rung is longer than the
schedule says, and one run in twenty is longer still. This module gives the time and cost a
schedule reaches with probability ``quantile`` under the same model the simulator draws
(:mod:`optuna_seer.planning.simulator`):

* a trial's mean epoch factor over ``Δe`` epochs is log-normal with mean 1 and
  ``cv_k / sqrt(Δe)`` (independent epochs);
* a wave of ``m`` trials ends with the largest of ``m`` such factors, drawn exactly as
  ``exp(μ + σ Φ⁻¹(U^{1/m}))`` from one uniform ``U`` per wave (so a rung of 1,000 trials costs
  what a rung of 2 does); past :data:`EXACT_WAVES` full waves in a rung, their sum is the
  normal with the waves' summed mean and variance;
* start-up and provisioning are fixed, as in the schedule;
* billing ``"held"`` (a cloud cluster per rung): the cluster is held, and billed, until a
  wave's slowest trial ends, so the cost grows with the time; ``"per-launch"`` (the elastic
  executor's ledger, which charges each launch its own wall time × workers): each trial pays
  its own epochs, so the cost moves with the *sum* of the trials' deviations (a normal with
  their summed variance), and a rung's idle slots while its stragglers finish cost nothing.

Draws are seeded by the rung and wave position only (common random numbers), so two
schedules that differ in one rung differ only there, and the same schedule always gets the
same figures. Pure: numpy and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.plan import Rung
from optuna_seer.planning.workload import Workload

Array = npt.NDArray[np.float64]
EXACT_WAVES = 8
"""Full waves of a rung drawn one by one; more are summed as a normal."""
_Z_MIN, _Z_MAX = -9.0, 12.0
BILLINGS = ("held", "per-launch")
"""How a rung's workers are billed: the cluster until its slowest trial ends, or each launch."""


@lru_cache(maxsize=1)
def _normal_table() -> tuple[Array, Array]:
    """(log upper-tail probabilities, increasing; the normal quantiles they belong to)."""
    z = np.linspace(_Z_MIN, _Z_MAX, 8401)
    log_sf = np.array([math.log(0.5 * math.erfc(v / math.sqrt(2.0))) for v in z])
    return log_sf[::-1].copy(), z[::-1].copy()


def normal_quantile_from_log_sf(log_sf: Array) -> Array:
    """The standard normal ``z`` with ``log(1 - Φ(z)) = log_sf`` (clipped to [-9, 12]).

    Working in the log of the upper tail keeps the far right tail (the slowest of many
    trials) exact to about 1e-5.

    Example:
        >>> [round(float(v), 3) for v in normal_quantile_from_log_sf(np.log([0.5, 0.05]))]
        [0.0, 1.645]
    """
    xp, zp = _normal_table()
    return np.interp(log_sf, xp, zp)


def max_of_normals(uniforms: Array, m: int) -> Array:
    """Draws of the largest of ``m`` standard normals, one per uniform in ``uniforms``.

    Example:
        >>> u = np.array([0.95])
        >>> round(float(max_of_normals(u, 1)[0]), 3), round(float(max_of_normals(u, 100)[0]), 2)
        (1.645, 3.28)
    """
    with np.errstate(divide="ignore"):
        log_sf = np.log(-np.expm1(np.log(uniforms) / m))
    return normal_quantile_from_log_sf(log_sf)


@dataclass(frozen=True)
class StragglerModel:
    """How much epochs vary, and the probability a plan's deadline and budget must hold with.

    Args:
        epoch_cv: Relative spread (std/mean) of one epoch's time: a number for every worker
            count, or ``{workers: cv}`` (the nearest count at or below is used), as a
            :class:`~optuna_seer.planning.profile.Profile` holds it.
        quantile: The plan's time and cost must hold with this probability (0.95: p95).
        samples: Monte Carlo draws per figure.
        seed: Seed of the draws.
        billing: ``"held"`` (default) or ``"per-launch"``: see the module docstring.

    Example:
        >>> from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
        >>> w = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=3)
        >>> rungs = schedule([RungShape(9, 1, 1), RungShape(3, 3, 1)], w, 0.001, ClusterLimits())
        >>> rungs[-1].end_s
        180.0
        >>> seconds, dollars = StragglerModel(0.1).quantiles(rungs, w)
        >>> 180.0 < seconds < 180.0 * 1.5, dollars > sum(r.cost for r in rungs)
        (True, True)
        >>> StragglerModel(0.0).quantiles(rungs, w) == (180.0, sum(r.cost for r in rungs))
        True
    """

    epoch_cv: float | Mapping[int, float] = 0.0
    quantile: float = 0.95
    samples: int = 2000
    seed: int = 0
    billing: str = "held"
    _table: tuple[tuple[int, float], ...] = field(default=(), init=False, repr=False)
    _uniforms: dict[tuple[int, int], Array] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        items = (
            list(self.epoch_cv.items())
            if isinstance(self.epoch_cv, Mapping)
            else [(1, self.epoch_cv)]
        )
        table = []
        for workers, cv in items:
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ValueError(f"epoch_cv key {workers!r} must be a worker count >= 1.")
            if isinstance(cv, bool) or not isinstance(cv, (int, float)):
                raise TypeError(f"epoch_cv[{workers}]={cv!r} must be a number.")
            if not (math.isfinite(cv) and 0.0 <= cv <= 10.0):
                raise ValueError(
                    f"epoch_cv[{workers}]={cv!r} must lie in [0, 10]: the relative spread "
                    "(std/mean) of one epoch's time, e.g. 0.1."
                )
            table.append((workers, float(cv)))
        if not table:
            raise ValueError("epoch_cv={} is empty; give a number or {workers: cv}.")
        object.__setattr__(self, "_table", tuple(sorted(table)))
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, (int, float)):
            raise TypeError(f"quantile={self.quantile!r} must be a number, e.g. 0.95.")
        if not 0.5 <= self.quantile < 1.0:
            raise ValueError(
                f"quantile={self.quantile!r} must lie in [0.5, 1), e.g. 0.95: the probability "
                "that the plan's deadline and budget hold."
            )
        if self.billing not in BILLINGS:
            raise ValueError(
                f"billing={self.billing!r} must be one of {', '.join(map(repr, BILLINGS))}."
            )
        for name, value, low in (("samples", self.samples, 100), ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be a whole number >= {low}.")

    def cv_on(self, workers: int) -> float:
        """The epoch-time spread at ``workers`` (the nearest count at or below; else the
        smallest given)."""
        chosen = self._table[0][1]
        for count, cv in self._table:
            if count <= workers:
                chosen = cv
        return chosen

    @property
    def is_deterministic(self) -> bool:
        """No spread at any worker count: the schedule's own figures hold."""
        return all(cv == 0.0 for _, cv in self._table)

    def _u(self, rung: int, slot: int) -> Array:
        cached = self._uniforms.get((rung, slot))
        if cached is None:
            cached = np.random.default_rng([self.seed, rung, slot]).random(self.samples)
            self._uniforms[(rung, slot)] = cached
        return cached

    def _slowest(self, rung: int, slot: int, trials: int, cv: float) -> Array:
        """Draws of the slowest of ``trials`` mean epoch factors (log-normal, mean 1)."""
        sigma = math.sqrt(math.log1p(cv * cv))
        z = max_of_normals(self._u(rung, slot), trials)
        return np.asarray(np.exp(sigma * z - sigma * sigma / 2.0), dtype=float)

    def extra_seconds(
        self, rungs: Sequence[Rung], workload: Workload, start_resource: int = 0
    ) -> list[Array]:
        """Per rung, draws of the seconds its stragglers add to the schedule's time
        (negative when every trial of a wave happens to be fast)."""
        extras: list[Array] = []
        previous = start_resource
        for rung in rungs:
            k, n, c = rung.gpus_per_trial, rung.n_trials, rung.concurrent_trials
            epochs = rung.resource - previous
            previous = rung.resource
            cv = self.cv_on(k) / math.sqrt(max(1, epochs))
            base = epochs * workload.epoch_seconds_on(k)
            extra = np.zeros(self.samples)
            if cv > 0.0 and base > 0.0:
                full, remainder = divmod(n, c)
                slow = workload.contention_on(c)
                if full <= EXACT_WAVES:
                    for slot in range(full):
                        extra += slow * base * (self._slowest(rung.index, slot, c, cv) - 1.0)
                else:
                    draws = self._slowest(rung.index, 0, c, cv) - 1.0
                    mean, sd = float(draws.mean()), float(draws.std())
                    normal = np.random.default_rng([self.seed, rung.index, 1 << 20])
                    summed = full * mean + math.sqrt(full) * sd * normal.standard_normal(
                        self.samples
                    )
                    extra += slow * base * summed
                if remainder:
                    slowest = self._slowest(rung.index, EXACT_WAVES + 1, remainder, cv)
                    extra += workload.contention_on(remainder) * base * (slowest - 1.0)
            extras.append(extra)
        return extras

    def _launch_deviations(
        self, rungs: Sequence[Rung], workload: Workload, start_resource: int
    ) -> Array:
        """Draws of the dollars the trials' own epoch deviations add, billed per launch."""
        total = np.zeros(self.samples)
        previous = start_resource
        for rung in rungs:
            k, n, c = rung.gpus_per_trial, rung.n_trials, rung.concurrent_trials
            epochs = rung.resource - previous
            previous = rung.resource
            cv = self.cv_on(k) / math.sqrt(max(1, epochs))
            rate = (
                rung.cost / (rung.gpus * (rung.end_s - rung.start_s))
                if rung.end_s > rung.start_s
                else 0.0
            )
            # Each trial: k workers × Δe epochs × t_k × contention × (F_i − 1), Var(F_i) = cv².
            full, remainder = divmod(n, c)
            scale_sq = full * c * workload.contention_on(c) ** 2 + (
                remainder * workload.contention_on(remainder) ** 2
            )
            sd = rate * k * epochs * workload.epoch_seconds_on(k) * cv * math.sqrt(scale_sq)
            if sd > 0.0:
                rng = np.random.default_rng([self.seed, rung.index, 2 << 20])
                total += sd * rng.standard_normal(self.samples)
        return total

    def quantiles(
        self, rungs: Sequence[Rung], workload: Workload, start_resource: int = 0
    ) -> tuple[float, float]:
        """(seconds, dollars) the schedule ``rungs`` (timed by
        :func:`~optuna_seer.planning.cost_model.schedule` for ``workload``) stays within
        with probability :attr:`quantile`; the schedule's own figures when there is no
        spread."""
        seconds = rungs[-1].end_s
        dollars = sum(r.cost for r in rungs)
        if self.is_deterministic:
            return seconds, dollars
        extras = self.extra_seconds(rungs, workload, start_resource)
        jct = seconds + np.sum(extras, axis=0)
        if self.billing == "held":
            cost = dollars + np.sum(
                [
                    extra * r.cost / (r.end_s - r.start_s) if r.end_s > r.start_s else 0.0 * extra
                    for r, extra in zip(rungs, extras)
                ],
                axis=0,
            )
        else:
            cost = dollars + self._launch_deviations(rungs, workload, start_resource)
        rank = max(0, math.ceil(self.quantile * self.samples - 1e-9) - 1)
        return (
            max(seconds, float(np.partition(jct, rank)[rank])),
            max(dollars, float(np.partition(cost, rank)[rank])),
        )
