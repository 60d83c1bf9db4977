"""Monte Carlo time and cost of an :class:`~optuna_seer.planning.stage_plan.ElasticPlan`.

The plan is a chain of stages (a DAG of rungs joined by synchronous barriers). For each of
``samples`` draws, stage ``r`` takes

* a provisioning delay when its cluster differs from the previous stage's: queueing (not
  billed) plus instance boot (billed), each log-normal with the cloud's spread;
* ``waves`` waves of ``concurrent`` trials; a trial takes ``startup + Σ epoch times``, each
  epoch ``t1 / s(k)`` times a log-normal factor with mean 1 and the profile's ``epoch_cv`` at
  ``k`` workers, all of it times the profile's ``contention`` for the wave's number of
  launches at once; a wave ends with its slowest trial (the straggler), the next starts then
  (a conservative bound on slot-by-slot scheduling, exact without noise);
* on spot instances, Poisson interruptions (per node-hour, per instance type if the cloud
  gives rates per type), each costing a re-provisioning, a relaunch and half a checkpoint
  interval of lost work (an epoch by default; with rung-end checkpoints only, the launch's
  epochs).

Cost: each lease (consecutive stages on one cluster) is billed ``nodes × $/h`` for its boot
plus its stages' time, rounded by the :class:`~optuna_seer.planning.billing.BillingRule`
(under coarse billing, per node instead: :mod:`~optuna_seer.planning.node_leases`); plus
checkpoint transfer (every relaunch of a survivor moves its checkpoint) and storage (one
checkpoint per configuration for the job's duration).

With no spread, exact billing and no transfer/storage prices, the simulator reproduces
:func:`optuna_seer.planning.cost_model.schedule` (the deterministic model SEER plans with)
exactly, up
to float rounding: :meth:`CloudModel.from_limits` gives that cloud. Same seed, same numbers:
random draws depend only on the seed, the stage index and that stage's own choices (common
random numbers, so plans that differ in one stage differ only there).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.cloud import CloudModel as CloudModel  # re-exported
from optuna_seer.planning.node_leases import node_lease_run
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.spare_nodes import launch_estimate
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

Array = npt.NDArray[np.float64]
_SECONDS_PER_MONTH = 30 * 86400.0
_EXACT_SUM_EPOCHS = 32
MAX_SAMPLES = 100_000
"""The most Monte Carlo samples one evaluator draws."""
MAX_DRAWS = 50_000_000
"""The most values (samples × trials of a stage) the simulator holds for one stage."""
_CHUNK_DRAWS = 4_000_000  # epoch-time draws made at once (same stream as one call)


def empirical_quantile(values: Array, q: float) -> float:
    """The smallest sample ``x`` with at least a fraction ``q`` of samples ``<= x``, so
    ``empirical_quantile(jct, q) <= deadline`` exactly when ``P(JCT <= deadline) >= q``
    over the samples.

    Example:
        >>> empirical_quantile(np.arange(1.0, 101.0), 0.95)
        95.0
    """
    if not (0.0 < q <= 1.0):
        raise ValueError(f"q={q!r} must lie in (0, 1].")
    rank = max(0, math.ceil(q * len(values) - 1e-9) - 1)
    return float(np.partition(values, rank)[rank])


@dataclass(frozen=True)
class SimulationResult:
    """Distribution of a plan's completion time (JCT, seconds) and cost (dollars).

    ``stage_start_s``/``stage_end_s``/``stage_cost`` are means over the samples, per stage
    (``stage_cost`` cumulative at each stage's end, billing rounding included).
    """

    jct: tuple[float, ...]
    cost: tuple[float, ...]
    stage_start_s: tuple[float, ...]
    stage_end_s: tuple[float, ...]
    stage_cost: tuple[float, ...]
    seed: int

    def jct_quantile(self, q: float) -> float:
        return empirical_quantile(np.asarray(self.jct), q)

    def cost_quantile(self, q: float) -> float:
        return empirical_quantile(np.asarray(self.cost), q)

    @property
    def jct_mean(self) -> float:
        return float(np.mean(self.jct))

    @property
    def cost_mean(self) -> float:
        return float(np.mean(self.cost))

    @property
    def jct_p50(self) -> float:
        return self.jct_quantile(0.5)

    @property
    def jct_p95(self) -> float:
        return self.jct_quantile(0.95)

    @property
    def cost_p50(self) -> float:
        return self.cost_quantile(0.5)

    @property
    def cost_p95(self) -> float:
        return self.cost_quantile(0.95)

    def probability_by(self, deadline_s: float) -> float:
        """Fraction of samples that finish by ``deadline_s``."""
        return float(np.mean(np.asarray(self.jct) <= deadline_s))


@dataclass(frozen=True)
class PlanStats:
    """The three numbers a planner compares: mean cost, JCT quantile and mean JCT."""

    cost: float
    jct_quantile: float
    jct_mean: float


def _lognormal(rng: np.random.Generator, mean: float, cv: float, shape: tuple[int, ...]) -> Array:
    if mean == 0:
        return np.zeros(shape)
    if cv == 0:
        return np.full(shape, float(mean))
    sigma2 = math.log1p(cv * cv)
    return np.asarray(
        rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=shape), dtype=float
    )


class PlanEvaluator:
    """Simulates many plans of one job with shared random draws (what planners call).

    Stage samples are cached by stage index and the stage's own choices, so evaluating a
    plan that differs from a known one in one stage costs a few vector additions.

    Example:
        >>> from optuna_seer.pricing.sources import PriceQuote
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> q = PriceQuote("gpu1", "V100", 1, 3.6)
        >>> plan = ElasticPlan((Stage(2, 1, 1, q, 2), Stage(1, 3, 1, q, 2)))
        >>> ev = PlanEvaluator(Profile(epoch_seconds=100, scaling="linear"), CloudModel(), 8)
        >>> ev.stats(plan)
        PlanStats(cost=0.6, jct_quantile=300.0, jct_mean=300.0)
    """

    def __init__(
        self,
        profile: Profile,
        cloud: CloudModel,
        samples: int = 1000,
        seed: int = 0,
        quantile: float = 0.95,
    ) -> None:
        if (
            isinstance(samples, bool)
            or not isinstance(samples, int)
            or not 1 <= samples <= MAX_SAMPLES
        ):
            raise ValueError(
                f"samples={samples!r} must be a whole number from 1 to {MAX_SAMPLES:,}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a whole number >= 0.")
        if not (0.0 < quantile <= 1.0):
            raise ValueError(f"quantile={quantile!r} must lie in (0, 1], e.g. 0.95.")
        self.profile = profile
        self.cloud = cloud
        self.samples = samples
        self.seed = seed
        self.quantile = quantile
        self._factors: dict[tuple[int, int, int, int], Array] = {}
        self._makespans: dict[
            tuple[int, int, int, int, int, int, str, str], tuple[Array, Array]
        ] = {}
        self._delays: dict[int, tuple[Array, Array]] = {}

    def _epoch_factors(self, index: int, n: int, epochs: int, k: int) -> Array:
        """(samples, n) mean epoch-time factors of each trial of stage ``index`` on ``k``."""
        key = (index, n, epochs, k)
        cached = self._factors.get(key)
        if cached is None:
            cv = self.profile.cv_on(k)
            rng = np.random.default_rng([self.seed, 1, index, k])
            if epochs <= _EXACT_SUM_EPOCHS:
                # Row blocks drawn in order are the numbers one call would draw.
                rows = max(1, _CHUNK_DRAWS // (n * epochs))
                cached = np.concatenate(
                    [
                        _lognormal(rng, 1.0, cv, (min(rows, self.samples - first), n, epochs)).mean(
                            axis=2
                        )
                        for first in range(0, self.samples, rows)
                    ]
                )
            else:  # Central limit: the mean of many epochs is normal around 1.
                draws = rng.normal(1.0, cv / math.sqrt(epochs), (self.samples, n))
                cached = np.maximum(draws, 0.05)
            self._factors[key] = cached
        return cached

    def _delay(self, index: int) -> tuple[Array, Array]:
        """(queue, boot) samples of a new cluster at stage ``index``."""
        cached = self._delays.get(index)
        if cached is None:
            rng = np.random.default_rng([self.seed, 2, index])
            cached = self.cloud.provisioning_model.draw(rng, self.samples)
            self._delays[index] = cached
        return cached

    def work_samples(self, index: int, stage: Stage, previous_resource: int) -> tuple[Array, Array]:
        """(makespan, spot interruption delay) samples of stage ``index``'s trials, after
        ``previous_resource`` epochs (no provisioning)."""
        epochs = stage.resource - previous_resource
        k, c = stage.gpus_per_trial, stage.concurrent_trials
        key = (
            index,
            stage.n_trials,
            epochs,
            k,
            c,
            stage.nodes,
            stage.instance.market,
            stage.instance.instance_type,
        )
        cached = self._makespans.get(key)
        if cached is not None:
            return cached
        if self.samples * stage.n_trials > MAX_DRAWS:
            raise ValueError(
                f"samples={self.samples:,} × {stage.n_trials:,} trials in stage {index} is more "
                f"than the {MAX_DRAWS:,} values the simulator holds; use fewer samples."
            )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: inf, never feasible
            cached = self._work_samples(index, stage, epochs)
        self._makespans[key] = cached
        return cached

    def _work_samples(self, index: int, stage: Stage, epochs: int) -> tuple[Array, Array]:
        k, c = stage.gpus_per_trial, stage.concurrent_trials
        epoch_s = self.profile.epoch_seconds_on(k)
        startup = self.profile.startup_on(k)
        # Wave j holds trials j·c … (j+1)·c − 1, slowed by the profile's contention for that
        # many launches at once, and ends with its slowest trial.
        slowdown = np.array(
            [self.profile.contention_on(len(range(j, stage.n_trials)[:c]))
             for j in range(0, stage.n_trials, c)]
        )  # fmt: skip
        if self.profile.cv_on(k) == 0:
            makespan = np.full(self.samples, float(slowdown.sum()) * (startup + epochs * epoch_s))
        else:
            factors = self._epoch_factors(index, stage.n_trials, epochs, k)
            slowest = np.maximum.reduceat(factors, np.arange(0, stage.n_trials, c), axis=1)
            makespan = slowdown.sum() * startup + epochs * epoch_s * (slowest @ slowdown)
        rate = self.cloud.spot_rate(stage.instance.instance_type)
        interruptions: Array = np.zeros(self.samples)
        if stage.instance.market == "spot" and rate > 0:
            rng = np.random.default_rng([self.seed, 3, index, k, c, stage.nodes])
            expected = rate * stage.nodes * makespan / 3600.0
            # A stage long enough to pass Poisson's range never meets a deadline anyway.
            counts = rng.poisson(np.nan_to_num(np.minimum(expected, 1e15), nan=1e15))
            lost = self.cloud.lost_epochs(epochs) * epoch_s
            penalty = self.cloud.queue_seconds + self.cloud.boot_seconds + startup + lost
            interruptions = np.asarray(counts * penalty, dtype=float)
        return makespan, interruptions

    def _run(
        self, plan: ElasticPlan, detail: bool
    ) -> tuple[Array, Array, list[tuple[Array, Array, Array]]]:
        """JCT samples, cost samples, and (with ``detail``) per stage (start, end, cumulative
        cost) samples."""
        stages = plan.stages
        if self.cloud.per_node_leases:
            previous = [0, *(s.resource for s in stages[:-1])]
            clock, cost, per_stage = node_lease_run(
                stages,
                lambda i: self.work_samples(i, stages[i], previous[i]),
                self._delay,
                self.cloud.billing_rule,
                self.samples,
                detail,
                launch_s=(
                    (
                        lambda i: launch_estimate(
                            self.profile, stages[i], stages[i].resource - previous[i]
                        )
                    )
                    if self.cloud.uses_spares
                    else None
                ),
            )
        else:
            clock, cost, per_stage = self._cluster_leases(plan, detail)
        gb = float(self.profile.checkpoint_gb)
        if gb > 0:
            moved = sum(s.n_trials for s in stages[1:]) * gb
            cost = cost + moved * self.cloud.transfer_dollars_per_gb
            stored = stages[0].n_trials * gb
            cost = cost + (
                stored * self.cloud.storage_dollars_per_gb_month * clock / _SECONDS_PER_MONTH
            )
        return clock, cost, per_stage

    def _cluster_leases(
        self, plan: ElasticPlan, detail: bool
    ) -> tuple[Array, Array, list[tuple[Array, Array, Array]]]:
        """:meth:`_run` with every cluster one lease, released whole at a resize."""
        clock: Array = np.zeros(self.samples)
        cost: Array = np.zeros(self.samples)
        billing = self.cloud.billing_rule
        per_stage: list[tuple[Array, Array, Array]] = []
        lease_s = clock
        previous_resource = 0
        stages = plan.stages
        clusters = [s.cluster for s in stages]
        last = len(stages) - 1
        for index, stage in enumerate(stages):
            start = clock
            makespan, interruptions = self.work_samples(index, stage, previous_resource)
            if index == 0 or clusters[index - 1] != clusters[index]:
                queue, boot = self._delay(index)
                lease_s = boot + makespan + interruptions
                clock = clock + queue + lease_s
            else:
                lease_s = lease_s + makespan + interruptions
                clock = clock + makespan + interruptions
            rate = stage.nodes * stage.instance.dollars_per_second
            if index == last or clusters[index + 1] != clusters[index]:
                cost = cost + rate * billing.billed_array(lease_s)
                stage_cost = cost
            elif detail:
                stage_cost = cost + rate * lease_s
            if detail:
                per_stage.append((start, clock, stage_cost))
            previous_resource = stage.resource
        return clock, cost, per_stage

    def stats(self, plan: ElasticPlan) -> PlanStats:
        """Mean cost, JCT at the evaluator's quantile, and mean JCT of ``plan``."""
        with np.errstate(over="ignore", invalid="ignore"):
            jct, cost, _ = self._run(plan, detail=False)
        return PlanStats(
            cost=float(cost.mean()),
            jct_quantile=empirical_quantile(jct, self.quantile),
            jct_mean=float(jct.mean()),
        )

    def cost_samples(self, plan: ElasticPlan) -> Array:
        """``plan``'s cost in every sample (the draws every plan of this evaluator shares)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._run(plan, detail=False)[1]

    def result(self, plan: ElasticPlan) -> SimulationResult:
        """The full distribution of ``plan``'s time and cost.

        Raises:
            ValueError: A time or cost overflows (is not finite).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            jct, cost, per_stage = self._run(plan, detail=True)
        if not (np.isfinite(jct).all() and np.isfinite(cost).all()):
            raise ValueError(
                f"simulating the plan overflows: time up to {float(np.max(jct)):.4g} s, cost up "
                f"to ${float(np.max(cost)):.4g}; the profile's times (epoch_seconds, scaling, "
                "contention, startup_seconds) or the prices are too large."
            )
        return SimulationResult(
            jct=tuple(float(v) for v in jct),
            cost=tuple(float(v) for v in cost),
            stage_start_s=tuple(float(s.mean()) for s, _, _ in per_stage),
            stage_end_s=tuple(float(e.mean()) for _, e, _ in per_stage),
            stage_cost=tuple(float(c.mean()) for _, _, c in per_stage),
            seed=self.seed,
        )


def used_gpu_seconds(plan: ElasticPlan, profile: Profile) -> float:
    """Mean worker-seconds the plan's launches actually use (start-up and epochs, contention
    included): what a per-use ledger charges, e.g. ``ElasticTuner``'s, which bills each launch
    its wall time × workers, while :func:`simulate` bills the slots a stage holds, idle ones
    in a partial last wave included.

    Example:
        >>> from optuna_seer.pricing.sources import PriceQuote
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> q = PriceQuote("local-slot", "cpu", 1, 1.0)
        >>> plan = ElasticPlan((Stage(3, 1, 1, q, 2), Stage(1, 3, 1, q, 1)))
        >>> used_gpu_seconds(plan, Profile(epoch_seconds=10, scaling="linear", startup_seconds=5))
        70.0
    """
    total = 0.0
    previous = 0
    for stage in plan.stages:
        k, c = stage.gpus_per_trial, stage.concurrent_trials
        launch_s = profile.startup_on(k) + (stage.resource - previous) * profile.epoch_seconds_on(k)
        for first in range(0, stage.n_trials, c):
            launches = min(c, stage.n_trials - first)
            total += launches * k * launch_s * profile.contention_on(launches)
        previous = stage.resource
    return total


def simulate(
    plan: ElasticPlan,
    profile: Profile,
    cloud: CloudModel | None = None,
    *,
    samples: int = 1000,
    seed: int = 0,
) -> SimulationResult:
    """Monte Carlo distribution of ``plan``'s completion time and cost.

    Example:
        >>> from optuna_seer.pricing.sources import PriceQuote
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> q = PriceQuote("gpu1", "V100", 1, 3.0)
        >>> plan = ElasticPlan((Stage(9, 1, 1, q, 9), Stage(3, 3, 2, q, 6)))
        >>> r = simulate(plan, Profile(epoch_seconds=60, scaling="amdahl:0.9", epoch_cv=0.1))
        >>> r.jct_p50 < r.jct_p95
        True
    """
    return PlanEvaluator(profile, cloud or CloudModel(), samples, seed).result(plan)
