"""RubberBand: the cheapest resource plan whose completion time meets a deadline.

The job (successive halving: trials and epochs per rung) is fixed; the plan chooses, per
stage, GPUs per trial and the cluster (instance type, nodes). Objective: minimise the mean
simulated cost subject to the ``quantile`` (default p95) of the simulated completion time
being at most the deadline. The search (pure; all timing by
:class:`~optuna_seer.planning.simulator.PlanEvaluator`, with every simulated plan cached):

1. Candidate options per stage: every worthwhile GPU count ``k`` (``gpu_candidates``) on
   every instance type, with the node counts that give each distinct number of waves, kept
   when no other option is both faster and cheaper (its own boot included).
2. Start points: the best *static* cluster (:func:`best_static_plan`: one cluster for the whole
   job, every stage giving its trials as many GPUs as help, idle ones lent to the remaining
   trials) and the fastest plan (each stage's fastest option). Under per-node leases (hourly
   billing) also the cheapest few of a joint, hour-aware enumeration of every stage's node
   count (:mod:`~optuna_seer.planning.lease_search`), whose stage ends fall before the paid
   hours end; and there no move may leave the plan dearer than the static cluster in more
   samples than ``dearer_share`` allows.
3. From each start, greedy moves among single-stage changes (and pairs of adjacent stages
   moved onto one cluster, which saves a provisioning) that stay feasible and cost less:
   RubberBand's criterion applies the best cost-marginal benefit
   ``M = (cost_best − cost_new) / (JCT_new − JCT_best)`` (changes that are cheaper *and*
   faster first); a second pass applies the largest saving. Each stops when no move is
   cheaper. The cheapest result wins, so the plan is never dearer than the static baseline.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.lease_search import TimedStage, joint_lease_plans
from optuna_seer.planning.plan import format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband_problem import (
    PlanningProblem,
    RubberBandResult,
    SuccessiveHalvingJob,
)
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.seer import (
    InfeasiblePlanError,
    gpu_candidates,
)
from optuna_seer.planning.simulator import PlanEvaluator, PlanStats
from optuna_seer.planning.stage_plan import (
    ElasticPlan,
    Stage,
    concurrent_trials,
    nodes_for,
)
from optuna_seer.planning.workload import Workload

__all__ = [
    "PlanningProblem",
    "RubberBandResult",
    "SuccessiveHalvingJob",
    "best_static_plan",
    "plan_rubberband",
    "stage_options",
    "static_plans",
]

_MAX_OPTIONS_PER_SHAPE = 16
_JOINT_PLANS = 100  # hour-aware joint plans simulated under per-node leases
_JOINT_STARTS = 1  # the cheapest of them the greedy search starts from


def _epochs(job: SuccessiveHalvingJob, index: int) -> int:
    return job.resources[index] - (job.resources[index - 1] if index else 0)


def _stage_time(profile: Profile, stage: Stage, epochs: int) -> float:
    """Deterministic seconds of a stage's trials (no provisioning, no stragglers), each wave
    slowed by the profile's contention for its number of trials at once."""
    k, c, n = stage.gpus_per_trial, stage.concurrent_trials, stage.n_trials
    per_trial = profile.startup_on(k) + epochs * profile.epoch_seconds_on(k)
    return per_trial * sum(profile.contention_on(min(c, n - first)) for first in range(0, n, c))


def _expected_interruption_s(
    problem: PlanningProblem, stage: Stage, epochs: int, seconds: float
) -> float:
    """Mean seconds spot interruptions add to a stage of ``seconds`` (0 on demand)."""
    if stage.instance.market != "spot":
        return 0.0
    cloud, profile = problem.cloud, problem.profile
    k = stage.gpus_per_trial
    penalty = (
        cloud.queue_seconds
        + cloud.boot_seconds
        + profile.startup_on(k)
        + cloud.lost_epochs(epochs) * profile.epoch_seconds_on(k)
    )
    return cloud.spot_rate(stage.instance.instance_type) * stage.nodes * seconds / 3600 * penalty


@functools.lru_cache(maxsize=1024)
def _gpu_counts(
    curve: ScalingCurve, gpus_per_node: int, max_gpus: int, min_gain: float
) -> tuple[int, ...]:
    workload = Workload(epoch_seconds=1.0, scaling=curve, max_epochs=1, gpus_per_node=gpus_per_node)
    counts = gpu_candidates(workload, ClusterLimits(max_gpus=max_gpus), min_gain)
    return tuple(k for k in counts if k <= gpus_per_node or k % gpus_per_node == 0)


class _Search:
    """One planning run's caches: GPU counts, stage choices and simulated plans."""

    def __init__(self, problem: PlanningProblem, evaluator: PlanEvaluator | None = None) -> None:
        self.problem = problem
        self.evaluator = evaluator or problem.evaluator()
        self.rungs = len(problem.job.n_trials)
        self._fastest: dict[tuple[int, PriceQuote, int], Stage | None] = {}
        self._stats: dict[ElasticPlan, PlanStats] = {}
        self._in_place: dict[tuple[int, PriceQuote], list[Stage]] = {}
        self.guard: np.ndarray | None = None
        """Per-node leases: the static cluster's cost samples, which a move may exceed in at
        most the problem's ``dearer_share`` of them (else rounding makes the plan lose)."""
        self._not_dearer: dict[ElasticPlan, bool] = {}

    def gpu_counts(self, instance: PriceQuote) -> tuple[int, ...]:
        p = self.problem
        return _gpu_counts(p.profile.curve, instance.gpus, p.max_gpus, p.min_marginal_speedup)

    def stats(self, plan: ElasticPlan) -> PlanStats:
        found = self._stats.get(plan)
        if found is None:
            found = self._stats[plan] = self.evaluator.stats(plan)
        return found

    @property
    def evaluations(self) -> int:
        return len(self._stats)

    def feasible(self, stats: PlanStats) -> bool:
        return stats.jct_quantile <= self.problem.deadline_s

    def not_dearer(self, plan: ElasticPlan) -> bool:
        """Whether ``plan`` costs more than :attr:`guard` in at most the allowed share of
        the samples (always, without a guard)."""
        if self.guard is None:
            return True
        found = self._not_dearer.get(plan)
        if found is None:
            ours = self.evaluator.cost_samples(plan)
            share = float(np.mean(ours > self.guard * (1 + 1e-9)))
            found = self._not_dearer[plan] = share <= self.problem.dearer_share + 1e-12
        return found

    def fastest_k(self, index: int, instance: PriceQuote, nodes: int) -> Stage | None:
        """The stage on (``instance``, ``nodes``) whose trials finish soonest: a trial gets
        the GPUs that help most, idle ones lent to the remaining trials."""
        key = (index, instance, nodes)
        if key in self._fastest:
            return self._fastest[key]
        n, resource = self.problem.job.n_trials[index], self.problem.job.resources[index]
        epochs = _epochs(self.problem.job, index)
        best: tuple[float, int, Stage] | None = None
        for k in self.gpu_counts(instance):
            if concurrent_trials(n, k, instance.gpus, nodes) < 1:
                continue
            stage = Stage(n, resource, k, instance, nodes)
            seconds = _stage_time(self.problem.profile, stage, epochs)
            if best is None or (seconds, k) < best[:2]:
                best = (seconds, k, stage)
        self._fastest[key] = None if best is None else best[2]
        return self._fastest[key]

    def options(self, index: int, prune: bool = True) -> list[Stage]:
        p = self.problem
        n, resource = p.job.n_trials[index], p.job.resources[index]
        epochs = _epochs(p.job, index)
        concurrencies = sorted({math.ceil(n / w) for w in range(1, n + 1)})
        found: dict[tuple[PriceQuote, int, int], Stage] = {}
        for instance in p.instances:
            if instance.gpus > p.max_gpus:
                continue
            max_nodes = p.max_gpus // instance.gpus
            for k in self.gpu_counts(instance):
                node_counts = sorted(
                    {nodes_for(c, k, instance.gpus) for c in concurrencies}
                    & set(range(1, max_nodes + 1))
                )
                if prune and len(node_counts) > _MAX_OPTIONS_PER_SHAPE:
                    picks = np.unique(
                        np.geomspace(1, len(node_counts), _MAX_OPTIONS_PER_SHAPE)
                        .round()
                        .astype(int)
                    )
                    node_counts = [node_counts[i - 1] for i in picks]
                for nodes in node_counts:
                    found[(instance, k, nodes)] = Stage(n, resource, k, instance, nodes)
        options = list(found.values())
        if not prune:
            return options
        # Cost of an option on its own cluster: its nodes billed for boot plus its own time;
        # keep the options no other beats on both time and cost.
        boot = p.cloud.boot_seconds
        scored = []
        for stage in options:
            seconds = _stage_time(p.profile, stage, epochs)
            seconds += _expected_interruption_s(p, stage, epochs, seconds)
            rate = stage.nodes * stage.instance.dollars_per_second
            scored.append((seconds, rate * (seconds + boot), stage))
        scored.sort(key=lambda item: (item[0], item[1]))
        front: list[Stage] = []
        cheapest = math.inf
        for _, cost, stage in scored:
            if cost < cheapest * (1 - 1e-12):
                front.append(stage)
                cheapest = cost
        return front

    def in_place(self, index: int, instance: PriceQuote) -> list[Stage]:
        """Every (unpruned) option of stage ``index`` on ``instance``: any node count a
        neighbouring stage's pool of that type could shrink or grow to."""
        key = (index, instance)
        found = self._in_place.get(key)
        if found is None:
            found = [s for s in self.options(index, prune=False) if s.instance == instance]
            self._in_place[key] = found
        return found

    def joint_plans(self, keep: int) -> list[ElasticPlan]:
        """Per-node leases: the ``keep`` cheapest plans of the joint, hour-aware enumeration
        (:func:`~optuna_seer.planning.lease_search.joint_lease_plans`) over every stage's
        fastest option per node count on every instance type."""
        p = self.problem
        timed: list[list[TimedStage]] = []
        previous = 0
        for r in range(self.rungs):
            found: dict[tuple[PriceQuote, int, int], Stage] = {}
            for instance in p.instances:
                if instance.gpus > p.max_gpus:
                    continue
                for nodes in range(1, p.max_gpus // instance.gpus + 1):
                    stage = self.fastest_k(r, instance, nodes)
                    if stage is not None:
                        found.setdefault(
                            (instance, stage.gpus_per_trial, stage.concurrent_trials), stage
                        )
            rows = []
            for stage in found.values():
                makespan, interrupted = self.evaluator.work_samples(r, stage, previous)
                rows.append(TimedStage(stage, float(np.mean(makespan + interrupted))))
            timed.append(rows)
            previous = p.job.resources[r]
        cloud = p.cloud
        return [
            plan
            for _, _, plan in joint_lease_plans(
                timed, p.deadline_s, cloud.billing_rule, cloud.queue_seconds,
                cloud.boot_seconds, keep=keep,
            )
        ]  # fmt: skip

    def static_plans(self) -> list[ElasticPlan]:
        plans = []
        for instance in self.problem.instances:
            if instance.gpus > self.problem.max_gpus:
                continue
            for nodes in range(1, self.problem.max_gpus // instance.gpus + 1):
                stages = [self.fastest_k(r, instance, nodes) for r in range(self.rungs)]
                if all(s is not None for s in stages):
                    plans.append(ElasticPlan(tuple(s for s in stages if s is not None)))
        return plans

    def best_static(self) -> tuple[ElasticPlan, PlanStats] | None:
        best: tuple[ElasticPlan, PlanStats] | None = None
        for plan in self.static_plans():
            stats = self.stats(plan)
            if self.feasible(stats) and (best is None or stats.cost < best[1].cost):
                best = (plan, stats)
        return best

    def moves(self, plan: ElasticPlan, options: list[list[Stage]]) -> list[ElasticPlan]:
        """Single-stage changes, and adjacent pairs moved onto one cluster."""
        moves = []
        stages = plan.stages
        for index in range(len(stages)):
            for option in options[index]:
                if option != stages[index]:
                    moves.append(plan.replace_stage(index, option))
            for other in (index - 1, index + 1):
                if 0 <= other < len(stages) and stages[other].cluster != stages[index].cluster:
                    moved = self.fastest_k(index, *stages[other].cluster)
                    if moved is not None:
                        moves.append(plan.replace_stage(index, moved))
            if self.problem.cloud.per_node_leases:
                # Per-node leases: a neighbour's nodes, kept and shrunk or grown in place.
                for kind in {stages[o].instance for o in (index - 1, index + 1)
                             if 0 <= o < len(stages)}:  # fmt: skip
                    moves.extend(
                        plan.replace_stage(index, option)
                        for option in self.in_place(index, kind)
                        if option != stages[index]
                    )
            if index + 1 < len(stages):
                clusters = {o.cluster for o in (*options[index], *options[index + 1])}
                for cluster in clusters:
                    first = self.fastest_k(index, *cluster)
                    second = self.fastest_k(index + 1, *cluster)
                    if first is not None and second is not None:
                        moves.append(
                            plan.replace_stage(index, first).replace_stage(index + 1, second)
                        )
        return moves

    def greedy(
        self, start: ElasticPlan, options: list[list[Stage]], by_benefit: bool
    ) -> tuple[ElasticPlan, PlanStats]:
        """Apply the best cheaper feasible move until none is left. ``by_benefit``: best
        cost-marginal benefit ``M`` (RubberBand); otherwise the largest saving."""
        plan, best = start, self.stats(start)
        while True:
            chosen: tuple[tuple[float, float], ElasticPlan, PlanStats] | None = None
            for candidate in self.moves(plan, options):
                stats = self.stats(candidate)
                saving = best.cost - stats.cost
                # ``not >``: a NaN saving (an overflowed cost) is no saving.
                if not self.feasible(stats) or not saving > 1e-9 * max(1.0, best.cost):
                    continue
                slower = stats.jct_quantile - best.jct_quantile
                benefit = saving / slower if slower > 0 else math.inf
                key = (benefit, saving) if by_benefit else (saving, benefit)
                if chosen is not None and key <= chosen[0]:
                    continue
                if not self.not_dearer(candidate):
                    continue
                chosen = (key, candidate, stats)
            if chosen is None:
                return plan, best
            _, plan, best = chosen


def stage_options(problem: PlanningProblem, index: int, *, prune: bool = True) -> list[Stage]:
    """Candidate resources for stage ``index``; ``prune`` keeps the options no other beats
    on both stage time and stage cost (boot included), and at most
    ``_MAX_OPTIONS_PER_SHAPE`` node counts per (instance, GPUs per trial).

    Example:
        >>> q = PriceQuote("gpu1", "V100", 1, 3.0)
        >>> job = SuccessiveHalvingJob((4, 1), (1, 4))
        >>> p = PlanningProblem(job, Profile(epoch_seconds=60, scaling="amdahl:0.9"), (q,), 600.0,
        ...                     max_gpus=4)
        >>> sorted({(s.gpus_per_trial, s.nodes) for s in stage_options(p, 1)})
        [(1, 1), (2, 2), (4, 4)]
    """
    return _Search(problem).options(index, prune)


def static_plans(problem: PlanningProblem) -> list[ElasticPlan]:
    """Every static cluster: one instance type and node count for the whole job, each stage
    giving its trials the GPU count that finishes it soonest on that cluster (idle GPUs are
    lent to the remaining trials)."""
    return _Search(problem).static_plans()


def best_static_plan(
    problem: PlanningProblem, evaluator: PlanEvaluator | None = None
) -> tuple[ElasticPlan, PlanStats] | None:
    """The cheapest static cluster that meets the deadline (``None`` if none does)."""
    return _Search(problem, evaluator).best_static()


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
    search = _Search(problem)
    options = [search.options(r) for r in range(search.rungs)]
    if any(not o for o in options):
        raise ValueError("no instance type can run a trial within max_gpus.")
    fastest = ElasticPlan(
        tuple(
            min(
                opts,
                key=lambda s: (
                    _stage_time(problem.profile, s, _epochs(problem.job, opts_index)),
                    s.nodes * s.instance.dollars_per_hour,
                ),
            )
            for opts_index, opts in enumerate(options)
        )
    )
    static = search.best_static()
    starts: list[ElasticPlan] = [] if static is None else [static[0]]
    fastest_stats = search.stats(fastest)
    if search.feasible(fastest_stats):
        starts.append(fastest)
    if problem.cloud.per_node_leases:
        # Hourly node leases: hour-aware joint plans as further starts, and no move may make
        # the plan dearer than the static cluster in more samples than allowed.
        if static is not None:
            search.guard = search.evaluator.cost_samples(static[0])
        joint = [(plan, search.stats(plan)) for plan in search.joint_plans(_JOINT_PLANS)]
        joint.sort(key=lambda item: item[1].cost)
        starts.extend(
            [plan for plan, stats in joint
             if search.feasible(stats) and search.not_dearer(plan)][:_JOINT_STARTS]
        )  # fmt: skip
    if not starts:
        need = fastest_stats.jct_quantile
        raise InfeasiblePlanError(
            f"No plan meets the deadline {format_seconds(problem.deadline_s)} at "
            f"p{round(problem.quantile * 100)}: the fastest plan found needs "
            f"{format_seconds(need)} ({math.ceil(need) if math.isfinite(need) else need} s). "
            "Raise the deadline or max_gpus, or shrink the job.",
            min_deadline_s=need,
            min_dollars=None,
        )
    found: dict[ElasticPlan, PlanStats] = {}
    for start in starts:
        for by_benefit in (True, False):
            plan, stats = search.greedy(start, options, by_benefit)
            found[plan] = stats
    ranked = sorted(found.items(), key=lambda item: item[1].cost)
    best = ranked[0]
    if static is not None:
        # Cheaper on average is not enough: dearer than the static cluster in more than the
        # allowed share of the samples (a lease rounded up to one more hour, say), a plan
        # loses; the cheapest one that is not wins.
        theirs = search.evaluator.cost_samples(static[0])
        best = static
        for plan, stats in ranked:
            if plan == static[0] or stats.cost >= static[1].cost:
                break
            ours = search.evaluator.cost_samples(plan)
            if float(np.mean(ours > theirs * (1 + 1e-9))) <= problem.dearer_share + 1e-12:
                best = (plan, stats)
                break
    if not math.isfinite(best[1].cost):
        raise ValueError(
            f"every plan's simulated cost overflows (${best[1].cost}): the cloud's transfer or "
            "storage prices, or the profile's checkpoint_gb, are too large."
        )
    return RubberBandResult(
        plan=best[0],
        stats=best[1],
        static_plan=None if static is None else static[0],
        static_stats=None if static is None else static[1],
        deadline_s=problem.deadline_s,
        quantile=problem.quantile,
        evaluations=search.evaluations,
    )
