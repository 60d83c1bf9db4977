"""RubberBand: the cheapest resource plan whose completion time meets a deadline.

The job (successive halving: trials and epochs per rung) is fixed; the plan chooses, per
stage, GPUs per trial and the cluster (instance type, nodes). Objective: minimise the mean
simulated cost subject to the ``quantile`` (default p95) of the simulated completion time
being at most the deadline. The search (pure; all timing by
:class:`~optuna_seer.simulator.PlanEvaluator`):

1. Candidate options per stage: every worthwhile GPU count ``k`` (``gpu_candidates``) on
   every instance type, with the node counts that give each distinct number of waves, pruned
   to those not dominated in (expected stage time, expected GPU cost).
2. Start points: the best *static* cluster (:func:`best_static_plan`: one cluster for the whole
   job, every stage giving its trials as many GPUs as help, idle ones lent to the remaining
   trials) and the fastest plan (each stage's fastest option).
3. From each start, RubberBand's greedy: among single-stage changes (and pairs of adjacent
   stages moved onto one cluster, which saves a provisioning) that stay feasible and cost
   less, apply the one with the best cost-marginal benefit
   ``M = (cost_best − cost_new) / (JCT_new − JCT_best)`` (changes that are cheaper *and*
   faster come first); stop when none is cheaper. The cheapest result wins, so the plan is
   never dearer than the static baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np

from optuna_seer.cost_model import ClusterLimits
from optuna_seer.elastic_plan import ElasticPlan, Stage, concurrent_trials, nodes_for
from optuna_seer.plan import format_seconds
from optuna_seer.pricing import PriceQuote
from optuna_seer.profile import Profile
from optuna_seer.seer_planner import InfeasiblePlanError, gpu_candidates, rung_resources
from optuna_seer.simulator import CloudModel, PlanEvaluator, PlanStats

_MAX_OPTIONS_PER_SHAPE = 16


@dataclass(frozen=True)
class SuccessiveHalvingJob:
    """A successive-halving job: trials and cumulative epochs per rung.

    Example:
        >>> job = SuccessiveHalvingJob.geometric(81, 3, 27)
        >>> job.n_trials, job.resources
        ((81, 27, 9, 3), (1, 3, 9, 27))
    """

    n_trials: tuple[int, ...]
    resources: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.n_trials or len(self.n_trials) != len(self.resources):
            raise ValueError(
                f"n_trials={self.n_trials!r} and resources={self.resources!r} must be non-empty "
                "and of equal length (one entry per rung)."
            )
        for name, values in (("n_trials", self.n_trials), ("resources", self.resources)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name}={values!r} must be whole numbers >= 1.")
        for r in range(1, len(self.n_trials)):
            if (
                self.n_trials[r] > self.n_trials[r - 1]
                or self.resources[r] <= self.resources[r - 1]
            ):
                raise ValueError(
                    f"rung {r}: trials must not grow and epochs must grow "
                    f"(n_trials={self.n_trials!r}, resources={self.resources!r})."
                )

    @classmethod
    def geometric(
        cls, n_configs: int, reduction_factor: int, max_epochs: int, min_resource: int = 1
    ) -> SuccessiveHalvingJob:
        """``n_configs`` configurations, keeping ``1/η`` per rung, the finalists to ``max_epochs``
        (as many rungs as fit between ``min_resource`` and ``max_epochs``)."""
        for name, value, low in (
            ("n_configs", n_configs, 1),
            ("reduction_factor", reduction_factor, 2),
            ("max_epochs", max_epochs, 1),
            ("min_resource", min_resource, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be a whole number >= {low}.")
        rungs = 1
        while (
            reduction_factor**rungs <= n_configs
            and rung_resources(max_epochs, reduction_factor, rungs + 1, min_resource) is not None
        ):
            rungs += 1
        resources = rung_resources(max_epochs, reduction_factor, rungs, min_resource)
        if resources is None:
            raise ValueError(f"min_resource={min_resource} exceeds max_epochs={max_epochs}.")
        trials = tuple(math.ceil(n_configs / reduction_factor**r) for r in range(rungs))
        return cls(trials, resources)


@dataclass(frozen=True)
class PlanningProblem:
    """Everything RubberBand plans against.

    Args:
        job: Trials and epochs per rung.
        profile: The trial's timings (epoch time, scaling, spread, start-up).
        instances: Instance types (with prices) the plan may use; one accelerator model.
        deadline_s: The completion-time target, seconds.
        cloud: Provisioning delays, billing and data costs.
        max_gpus: Quota: most GPUs provisioned at once.
        quantile: ``P(JCT <= deadline)`` the plan must reach (0.95: the p95 meets it).
        samples: Monte Carlo samples per evaluation.
        seed: Random seed (same seed, same plan).
        min_marginal_speedup: GPU counts whose extra GPUs add less than this fraction of one
            GPU's throughput are never considered.
    """

    job: SuccessiveHalvingJob
    profile: Profile
    instances: tuple[PriceQuote, ...]
    deadline_s: float
    cloud: CloudModel = field(default_factory=CloudModel)
    max_gpus: int = 64
    quantile: float = 0.95
    samples: int = 400
    seed: int = 0
    min_marginal_speedup: float = 0.05

    def __post_init__(self) -> None:
        if not self.instances:
            raise ValueError("instances is empty; give at least one PriceQuote.")
        if not math.isfinite(self.deadline_s) or self.deadline_s <= 0:
            raise ValueError(f"deadline_s={self.deadline_s!r} must be positive and finite.")
        if isinstance(self.max_gpus, bool) or not isinstance(self.max_gpus, int):
            raise TypeError(f"max_gpus={self.max_gpus!r} must be an int.")
        small = [q.instance_type for q in self.instances if q.gpus > self.max_gpus]
        if len(small) == len(self.instances):
            raise ValueError(
                f"max_gpus={self.max_gpus} is below the GPUs of every instance type ({small})."
            )
        if not (0.0 < self.quantile <= 1.0):
            raise ValueError(f"quantile={self.quantile!r} must lie in (0, 1].")
        if not (0.0 < self.min_marginal_speedup <= 1.0):
            raise ValueError(
                f"min_marginal_speedup={self.min_marginal_speedup!r} must be in (0, 1]."
            )

    def evaluator(self) -> PlanEvaluator:
        return PlanEvaluator(self.profile, self.cloud, self.samples, self.seed, self.quantile)


@dataclass(frozen=True)
class RubberBandResult:
    """The chosen plan, its simulation, and the static baseline it was compared with."""

    plan: ElasticPlan
    stats: PlanStats
    static_plan: ElasticPlan | None
    static_stats: PlanStats | None
    deadline_s: float
    quantile: float
    evaluations: int

    def summary(self) -> str:
        lines = [
            f"RubberBand plan: cost ${self.stats.cost:,.2f} (mean), "
            f"p{round(self.quantile * 100)} time {format_seconds(self.stats.jct_quantile)} "
            f"of {format_seconds(self.deadline_s)} deadline"
        ]
        if self.static_stats is not None:
            lines.append(
                f"best static cluster: ${self.static_stats.cost:,.2f} "
                f"({self.static_stats.cost / self.stats.cost:.2f}× the plan)"
            )
        return "\n".join(lines)


def _stage_time(profile: Profile, stage: Stage, epochs: int) -> float:
    return stage.waves * (
        profile.startup_seconds + epochs * profile.epoch_seconds_on(stage.gpus_per_trial)
    )


def _gpu_counts(problem: PlanningProblem, instance: PriceQuote) -> tuple[int, ...]:
    workload = problem.profile.workload(problem.job.resources[-1], gpus_per_node=instance.gpus)
    limits = ClusterLimits(max_gpus=problem.max_gpus)
    return gpu_candidates(workload, limits, problem.min_marginal_speedup)


def stage_options(problem: PlanningProblem, index: int, *, prune: bool = True) -> list[Stage]:
    """Candidate resources for stage ``index``; ``prune`` drops dominated ones.

    Example:
        >>> q = PriceQuote("gpu1", "V100", 1, 3.0)
        >>> job = SuccessiveHalvingJob((4, 1), (1, 4))
        >>> p = PlanningProblem(job, Profile(epoch_seconds=60, scaling="amdahl:0.9"), (q,), 600.0,
        ...                     max_gpus=4)
        >>> sorted({(s.gpus_per_trial, s.nodes) for s in stage_options(p, 1)})
        [(1, 1), (2, 2), (4, 4)]
    """
    n = problem.job.n_trials[index]
    resource = problem.job.resources[index]
    epochs = resource - (problem.job.resources[index - 1] if index else 0)
    found: dict[tuple[PriceQuote, int, int], Stage] = {}
    for instance in problem.instances:
        if instance.gpus > problem.max_gpus:
            continue
        max_nodes = problem.max_gpus // instance.gpus
        for k in _gpu_counts(problem, instance):
            if k > instance.gpus and k % instance.gpus:
                continue
            concurrencies = sorted({math.ceil(n / w) for w in range(1, n + 1)})
            node_counts = sorted({nodes_for(c, k, instance.gpus) for c in concurrencies} - {0})
            node_counts = [m for m in node_counts if m <= max_nodes]
            if prune and len(node_counts) > _MAX_OPTIONS_PER_SHAPE:
                picks = np.unique(
                    np.geomspace(1, len(node_counts), _MAX_OPTIONS_PER_SHAPE).round().astype(int)
                )
                node_counts = [node_counts[i - 1] for i in picks]
            for nodes in node_counts:
                if concurrent_trials(n, k, instance.gpus, nodes) >= 1:
                    found[(instance, k, nodes)] = Stage(n, resource, k, instance, nodes)
    options = list(found.values())
    if not prune:
        return options
    scored = [
        (_stage_time(problem.profile, s, epochs), s.nodes * s.instance.dollars_per_hour, s)
        for s in options
    ]
    scored = [(t, t * rate, s) for t, rate, s in scored]
    scored.sort(key=lambda item: (item[0], item[1]))
    front: list[Stage] = []
    cheapest = math.inf
    for _, cost, stage in scored:
        if cost < cheapest - 1e-12:
            front.append(stage)
            cheapest = cost
    return front


def _fastest_k(
    problem: PlanningProblem, index: int, instance: PriceQuote, nodes: int
) -> Stage | None:
    """The stage on (``instance``, ``nodes``) whose trials finish soonest (idle GPUs lent)."""
    n = problem.job.n_trials[index]
    resource = problem.job.resources[index]
    epochs = resource - (problem.job.resources[index - 1] if index else 0)
    best: tuple[float, int, Stage] | None = None
    for k in _gpu_counts(problem, instance):
        if concurrent_trials(n, k, instance.gpus, nodes) < 1:
            continue
        stage = Stage(n, resource, k, instance, nodes)
        key = (_stage_time(problem.profile, stage, epochs), k)
        if best is None or key < best[:2]:
            best = (*key, stage)
    return None if best is None else best[2]


def static_plans(problem: PlanningProblem) -> list[ElasticPlan]:
    """Every static cluster: one instance type and node count for the whole job, each stage
    giving its trials the GPU count that finishes it soonest on that cluster."""
    plans = []
    for instance in problem.instances:
        if instance.gpus > problem.max_gpus:
            continue
        for nodes in range(1, problem.max_gpus // instance.gpus + 1):
            stages = [
                _fastest_k(problem, r, instance, nodes) for r in range(len(problem.job.n_trials))
            ]
            if all(s is not None for s in stages):
                plans.append(ElasticPlan(tuple(s for s in stages if s is not None)))
    return plans


def best_static_plan(
    problem: PlanningProblem, evaluator: PlanEvaluator | None = None
) -> tuple[ElasticPlan, PlanStats] | None:
    """The cheapest static cluster that meets the deadline (``None`` if none does)."""
    evaluator = evaluator or problem.evaluator()
    best: tuple[ElasticPlan, PlanStats] | None = None
    for plan in static_plans(problem):
        stats = evaluator.stats(plan)
        if stats.jct_quantile <= problem.deadline_s and (best is None or stats.cost < best[1].cost):
            best = (plan, stats)
    return best


def _neighbour_moves(
    problem: PlanningProblem, plan: ElasticPlan, options: list[list[Stage]]
) -> list[ElasticPlan]:
    moves = []
    stages = plan.stages
    for index in range(len(stages)):
        for option in options[index]:
            if option != stages[index]:
                moves.append(plan.replace_stage(index, option))
        for other in (index - 1, index + 1):
            if 0 <= other < len(stages) and stages[other].cluster != stages[index].cluster:
                moved = _fastest_k(problem, index, *stages[other].cluster)
                if moved is not None:
                    moves.append(plan.replace_stage(index, moved))
        if index + 1 < len(stages):
            # Both stages onto one cluster taken from either's options: saves a provisioning.
            for option in (*options[index], *options[index + 1]):
                first = _fastest_k(problem, index, *option.cluster)
                second = _fastest_k(problem, index + 1, *option.cluster)
                if first is not None and second is not None:
                    moves.append(plan.replace_stage(index, first).replace_stage(index + 1, second))
    return moves


def _greedy(
    problem: PlanningProblem,
    evaluator: PlanEvaluator,
    start: ElasticPlan,
    options: list[list[Stage]],
) -> tuple[ElasticPlan, PlanStats, int]:
    plan, best = start, evaluator.stats(start)
    evaluations = 1
    seen = {plan}
    while True:
        chosen: tuple[tuple[float, float], ElasticPlan, PlanStats] | None = None
        for candidate in _neighbour_moves(problem, plan, options):
            if candidate in seen:
                continue
            seen.add(candidate)
            stats = evaluator.stats(candidate)
            evaluations += 1
            saving = best.cost - stats.cost
            if stats.jct_quantile > problem.deadline_s or saving <= 1e-9 * max(1.0, best.cost):
                continue
            slower = stats.jct_quantile - best.jct_quantile
            benefit = saving / slower if slower > 0 else math.inf
            key = (benefit, saving)
            if chosen is None or key > chosen[0]:
                chosen = (key, candidate, stats)
        if chosen is None:
            return plan, best, evaluations
        _, plan, best = chosen
        seen = {plan}


def plan_rubberband(problem: PlanningProblem) -> RubberBandResult:
    """The cheapest plan (mean simulated cost) whose JCT quantile meets the deadline.

    Raises:
        InfeasiblePlanError: Even the fastest plan misses the deadline; ``min_deadline_s``
            says what deadline it would meet.

    Example:
        >>> q = PriceQuote("gpu1", "V100", 1, 3.0)
        >>> problem = PlanningProblem(
        ...     SuccessiveHalvingJob.geometric(27, 3, 9),
        ...     Profile(epoch_seconds=600, scaling="amdahl:0.95", epoch_cv=0.05),
        ...     (q,), deadline_s=4 * 3600, max_gpus=32, samples=200)
        >>> result = plan_rubberband(problem)
        >>> result.stats.jct_quantile <= 4 * 3600
        True
        >>> result.stats.cost <= result.static_stats.cost
        True
    """
    evaluator = problem.evaluator()
    rungs = len(problem.job.n_trials)
    options = [stage_options(problem, r) for r in range(rungs)]
    if any(not o for o in options):
        raise ValueError("no instance type can run a trial within max_gpus.")
    fastest = ElasticPlan(
        tuple(
            min(
                opts,
                key=lambda s, r=r: (  # type: ignore[misc]
                    _stage_time(
                        problem.profile,
                        s,
                        problem.job.resources[r] - (problem.job.resources[r - 1] if r else 0),
                    ),
                    s.nodes * s.instance.dollars_per_hour,
                ),
            )
            for r, opts in enumerate(options)
        )
    )
    static = best_static_plan(problem, evaluator)
    starts: list[ElasticPlan] = []
    if static is not None:
        starts.append(static[0])
    fastest_stats = evaluator.stats(fastest)
    if fastest_stats.jct_quantile <= problem.deadline_s:
        starts.append(fastest)
    if not starts:
        need = fastest_stats.jct_quantile
        raise InfeasiblePlanError(
            f"No plan meets the deadline {format_seconds(problem.deadline_s)} at "
            f"p{round(problem.quantile * 100)}: the fastest plan found needs "
            f"{format_seconds(need)} ({math.ceil(need)} s). Raise the deadline or max_gpus, "
            "or shrink the job.",
            min_deadline_s=need,
            min_dollars=None,
        )
    best: tuple[ElasticPlan, PlanStats] | None = None
    evaluations = 0
    for start in starts:
        plan, stats, count = _greedy(problem, evaluator, start, options)
        evaluations += count
        if best is None or stats.cost < best[1].cost:
            best = (plan, stats)
    assert best is not None
    return RubberBandResult(
        plan=best[0],
        stats=best[1],
        static_plan=None if static is None else static[0],
        static_stats=None if static is None else static[1],
        deadline_s=problem.deadline_s,
        quantile=problem.quantile,
        evaluations=evaluations,
    )


def exhaustive_plan(
    problem: PlanningProblem, evaluator: PlanEvaluator | None = None
) -> tuple[ElasticPlan, PlanStats] | None:
    """The cheapest feasible plan over *all* per-stage options (unpruned), by branch and bound.

    Only for jobs small enough to enumerate: a yardstick for :func:`plan_rubberband`.
    Every stage may also take the cluster of any other stage's option (so shared leases are
    enumerated too).
    """
    evaluator = evaluator or problem.evaluator()
    rungs = len(problem.job.n_trials)
    raw = [stage_options(problem, r, prune=False) for r in range(rungs)]
    clusters = {s.cluster for opts in raw for s in opts}
    options: list[list[Stage]] = []
    for r in range(rungs):
        extra = [_fastest_k(problem, r, *cluster) for cluster in clusters]
        merged = {(s.instance, s.gpus_per_trial, s.nodes): s for s in raw[r]}
        for s in extra:
            if s is not None:
                merged.setdefault((s.instance, s.gpus_per_trial, s.nodes), s)
        options.append(list(merged.values()))
    # Lower bounds per stage: the cheapest option's work alone, and elementwise-least time.
    least_cost = []
    least_time = []
    previous = 0
    for r in range(rungs):
        work = [evaluator._work(r, s, previous) for s in options[r]]
        least_cost.append(
            min(
                float((m + i).mean()) * s.nodes * s.instance.dollars_per_second
                for (m, i), s in zip(work, options[r])
            )
        )
        least_time.append(np.min(np.stack([m + i for m, i in work]), axis=0))
        previous = problem.job.resources[r]
    cost_tail = [sum(least_cost[r:]) for r in range(rungs)] + [0.0]
    time_tail = [np.sum(np.stack(least_time[r:]), axis=0) for r in range(rungs)]
    time_tail.append(np.zeros(problem.samples))
    best: tuple[ElasticPlan, PlanStats] | None = None

    def search(prefix: list[Stage], clock: np.ndarray, spent: float) -> None:
        nonlocal best
        r = len(prefix)
        if r == rungs:
            plan = ElasticPlan(tuple(prefix))
            stats = evaluator.stats(plan)
            if stats.jct_quantile <= problem.deadline_s and (
                best is None or stats.cost < best[1].cost
            ):
                best = (plan, stats)
            return
        previous_resource = problem.job.resources[r - 1] if r else 0
        for stage in options[r]:
            makespan, interrupted = evaluator._work(r, stage, previous_resource)
            stage_cost = (
                float((makespan + interrupted).mean())
                * stage.nodes
                * (stage.instance.dollars_per_second)
            )
            if best is not None and spent + stage_cost + cost_tail[r + 1] >= best[1].cost:
                continue
            new_clock = clock + makespan + interrupted
            if np.quantile(new_clock + time_tail[r + 1], problem.quantile) > problem.deadline_s:
                continue
            search([*prefix, stage], new_clock, spent + stage_cost)

    search([], np.zeros(problem.samples), 0.0)
    return best
