"""Execute a RubberBand plan: per stage its instance type and node count, on any backend.

:func:`run_elastic_plan` runs an :class:`~optuna_seer.planning.stage_plan.ElasticPlan` with
the same executor that runs SEER plans, :class:`~optuna_seer.execution.tuner.ElasticTuner`
(its run journal, rung runner, budget and deadline guards, retries, resume and results),
on a :class:`~optuna_seer.execution.staged_cluster.StagedCluster`: the backend resized to
each stage's cluster, its trials packed onto the nodes by the placement controller, every
cluster a lease billed as the cloud bills it.

The executor's pruner decides rungs by a SEER :class:`~optuna_seer.planning.plan.Plan`;
:func:`seer_plan_of` writes the elastic plan as one: the same rungs (trials, epochs,
workers per trial, trials at once), timed by the simulator's means. Its one price per
GPU-second (what the executor's ledger and budget guard charge per worker-second) is the
dearest stage's, so the guard never under-counts; the cloud bill of the leases
(:attr:`StagedRun.dollars`) is the measured cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any, Literal

import optuna

from optuna_seer.backends.base import Backend
from optuna_seer.execution.entry import SearchSpace, TrainTarget
from optuna_seer.execution.staged_cluster import Lease, ProvisioningDelay, StagedCluster, no_delay
from optuna_seer.execution.tuner import ElasticTuner, TuningResult
from optuna_seer.integration.prediction import store_prediction
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan, Rung, format_seconds, format_table
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, SimulationResult, simulate
from optuna_seer.planning.spare_nodes import launch_estimate
from optuna_seer.planning.stage_plan import ElasticPlan

__all__ = ["StagedRun", "run_elastic_plan", "seer_plan_of"]


def _spare_launch_seconds(plan: ElasticPlan, profile: Profile) -> Callable[[int], float]:
    """Stage index -> the seconds a launch of it is allowed on a spare node."""
    stages = plan.stages
    allowed = [
        launch_estimate(profile, stage, stage.resource - (stages[i - 1].resource if i else 0))
        for i, stage in enumerate(stages)
    ]
    return lambda index: allowed[min(index, len(allowed) - 1)]


def seer_plan_of(
    plan: ElasticPlan,
    profile: Profile,
    *,
    deadline_s: float,
    budget_dollars: float,
    prediction: SimulationResult | None = None,
    min_marginal_speedup: float = 0.05,
) -> Plan:
    """``plan`` as the SEER :class:`Plan` the executor and its pruner run by.

    Rung ``r`` keeps stage ``r``'s trials, epochs, workers and trials at once; its start,
    end and cost are ``prediction``'s means (default: a noise-free simulation), its epoch
    time the profile's at that worker count and concurrency. The price per GPU-second is
    the dearest stage's per-GPU price.

    Example:
        >>> from optuna_seer.planning.prices import PriceQuote
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> q = PriceQuote("gpu1", "V100", 1, 3.6)
        >>> plan = ElasticPlan((Stage(4, 1, 1, q, 4), Stage(2, 3, 1, q, 2)))
        >>> seer = seer_plan_of(plan, Profile(epoch_seconds=100, scaling="linear"),
        ...                     deadline_s=3600, budget_dollars=10)
        >>> [(r.n_trials, r.resource, r.concurrent_trials, r.end_s) for r in seer.rungs]
        [(4, 1, 4, 100.0), (2, 3, 2, 300.0)]
    """
    if prediction is None:
        prediction = simulate(plan, profile, samples=1)
    stages = plan.stages
    rungs = []
    before = 0.0
    for index, stage in enumerate(stages):
        cost = prediction.stage_cost[index]
        rungs.append(
            Rung(
                stage.n_trials,
                stage.resource,
                stage.gpus_per_trial,
                index=index,
                start_s=prediction.stage_start_s[index],
                end_s=prediction.stage_end_s[index],
                cost=max(cost - before, 0.0),
                epoch_seconds=profile.epoch_seconds_on(stage.gpus_per_trial)
                * profile.contention_on(stage.concurrent_trials),
                concurrent_trials=stage.concurrent_trials,
                waves=stage.waves,
                startup_s=profile.startup_on(stage.gpus_per_trial)
                * profile.contention_on(stage.concurrent_trials),
            )
        )
        before = cost
    ratios = [a / b for a, b in zip([s.n_trials for s in stages], [s.n_trials for s in stages[1:]])]
    factor = max(2, round(max(ratios, default=2.0)))
    price = max(s.instance.dollars_per_gpu_hour for s in stages) / 3600.0
    return Plan(
        rungs=tuple(rungs),
        reduction_factor=factor,
        deadline_s=deadline_s,
        budget_dollars=budget_dollars,
        price_per_gpu_second=price if price > 0 else 1e-12,
        min_marginal_speedup=min_marginal_speedup,
    )


@dataclass(frozen=True)
class StagedRun:
    """What :func:`run_elastic_plan` did: the executor's result and the clusters it leased.

    Attributes:
        tuning: The executor's :class:`TuningResult` (best trial, rungs, launches, ledger).
        plan: The elastic plan that ran.
        leases: Every cluster provisioned, in order.
        dollars: The cloud's bill for them (billing rule applied).
        billing: The billing rule.
        prediction: The simulator's distribution for the plan (``None`` if not given).
        notes: What the cluster did besides the plan (a cluster widened for a re-plan).
        preemptions: Spot nodes reclaimed (simulated ones, on a replay).
    """

    tuning: TuningResult
    plan: ElasticPlan
    leases: tuple[Lease, ...]
    dollars: float
    billing: BillingRule
    prediction: SimulationResult | None = None
    notes: tuple[str, ...] = ()
    preemptions: int = 0

    @property
    def wall_seconds(self) -> float:
        return self.tuning.wall_seconds

    def report(self, deadline_s: float | None = None) -> str:
        """Predicted vs measured time and cost, and the clusters leased, as text."""
        lines = []
        rows = []
        for lease in self.leases:
            rows.append(
                [
                    ",".join(str(s) for s in lease.stages),
                    f"{lease.nodes}×{lease.instance.instance_type}",
                    lease.instance.market,
                    f"{lease.queue_s:.0f}+{lease.boot_s:.0f}",
                    format_seconds(lease.held_seconds),
                    f"${lease.dollars(self.billing):,.2f}",
                ]
            )
        lines.append(
            format_table(["stages", "cluster", "market", "queue+boot s", "held", "billed"], rows)
        )
        measured = f"measured  time {format_seconds(self.wall_seconds)}  cost ${self.dollars:,.2f}"
        if self.prediction is not None:
            p = self.prediction
            lines.append(
                f"predicted time p50 {format_seconds(p.jct_p50)} p95 {format_seconds(p.jct_p95)}"
                f"  cost mean ${p.cost_mean:,.2f} p95 ${p.cost_p95:,.2f}"
            )
            lines.append(measured)
            ratio_t = self.wall_seconds / p.jct_p50 if p.jct_p50 > 0 else math.nan
            ratio_c = self.dollars / p.cost_mean if p.cost_mean > 0 else math.nan
            lines.append(f"measured / predicted: time {ratio_t:.3f} (of p50), cost {ratio_c:.3f}")
        else:
            lines.append(measured)
        if deadline_s is not None:
            met = "met" if self.wall_seconds <= deadline_s else "MISSED"
            lines.append(f"deadline {format_seconds(deadline_s)}: {met}")
        if self.preemptions:
            lines.append(
                f"{self.preemptions} spot node(s) reclaimed; "
                f"{self.tuning.failed_launches} launch(es) failed and were retried"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def run_elastic_plan(
    plan: ElasticPlan,
    *,
    backend: Backend | Callable[[PriceQuote], Backend],
    profile: Profile,
    deadline_s: float,
    budget_dollars: float,
    train: TrainTarget,
    checkpoints: str | Path,
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    search_space: SearchSpace | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    direction: Literal["maximize", "minimize"] = "maximize",
    cloud: CloudModel | None = None,
    delays: ProvisioningDelay = no_delay,
    storage_url: str | None = None,
    prediction: SimulationResult | None = None,
    progress: bool = False,
    poll_seconds: float = 0.5,
    tuner_options: dict[str, Any] | None = None,
    on_study: Callable[[optuna.Study], None] | None = None,
    simulate_preemptions: bool = False,
    seed: int = 0,
) -> StagedRun:
    """Run ``plan`` on ``backend`` resized stage by stage; see the module docstring.

    Args:
        plan: The stages and their clusters (:func:`~optuna_seer.plan_rubberband`'s plan).
        backend: Where launches run (``LocalBackend``, ``ReplayBackend``); its slots must
            hold each stage's placed trials. Or ``backend(instance) -> Backend`` for a backend
            of one instance type (``SkyPilotBackend``), called when a stage changes type.
        profile: The trial's timings the plan was made with.
        deadline_s: The deadline; the executor's guard stops trials at it.
        budget_dollars: The budget the executor's guard holds (at the dearest per-GPU price).
        train: The training program (as for ``ElasticTuner``).
        checkpoints: Checkpoint root: a directory or ``s3://`` prefix.
        storage: The study's storage (URL or storage object).
        study_name: The study; an unfinished one is continued, a finished one read back.
        search_space: ``callable(trial)``; defaults to ``search_space`` beside ``train``.
        sampler: The base sampler under ``SeerSampler`` (default TPE).
        direction: ``"maximize"`` or ``"minimize"`` the reported value.
        cloud: Billing, per cluster or per node (``CloudModel.per_node_leases``: the cluster
            then shrinks and grows in place), and, for ``prediction``, the rest of the model.
        delays: Provisioning delay of each new cluster (``no_delay`` for local slots).
        storage_url: The storage URL for workers, if it cannot be read from the storage.
        prediction: The plan's simulated distribution (default: simulated with ``cloud``).
        progress: Progress bars and notes (as for ``ElasticTuner``).
        poll_seconds: How often the backend is polled.
        tuner_options: More keyword arguments for ``ElasticTuner`` (e.g. ``max_launch_retries``).
        on_study: Called with the study before it runs (e.g. to note its name).
        simulate_preemptions: Reclaim spot nodes at the cloud model's rates (seeded by
            ``seed``), on a backend that can fail a launch (``ReplayBackend``).
        seed: Seeds the simulated preemptions.
    """
    cloud = cloud or CloudModel()
    if prediction is None:
        prediction = simulate(plan, profile, cloud, samples=400)
    model = cloud

    def spot_rate(quote: PriceQuote) -> float:
        return model.spot_rate(quote.instance_type) if quote.market == "spot" else 0.0

    cluster = StagedCluster(
        backend,
        plan,
        delays=delays,
        billing=cloud.billing_rule,
        preemption_rate=spot_rate if simulate_preemptions else None,
        seed=seed,
        node_leases=cloud.per_node_leases,
        launch_seconds=_spare_launch_seconds(plan, profile) if cloud.uses_spares else None,
    )
    spot = any(s.instance.market == "spot" for s in plan.stages)
    seer = seer_plan_of(
        plan, profile, deadline_s=deadline_s, budget_dollars=budget_dollars, prediction=prediction
    )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        sampler=SeerSampler(sampler, clock=cluster.now),
        pruner=SeerPruner(plan=seer, clock=cluster.now),
        load_if_exists=True,
    )
    if not study.trials:
        store_prediction(study, plan, profile, prediction)
    if on_study is not None:
        on_study(study)
    options: dict[str, Any] = {
        "drift_tolerance": math.inf,  # the stages' clusters are fixed: re-plan only at risk
        "limits": ClusterLimits(max_gpus=cluster.slots),
        # A reclaimed spot node fails its launches: retry them from their last checkpoint.
        "max_launch_retries": 20 if spot else 2,
        **(tuner_options or {}),
    }
    tuning = ElasticTuner(
        study,
        seer,
        backend=cluster,
        train=train,
        checkpoints=checkpoints,
        search_space=search_space,
        workload=profile.workload(plan.stages[-1].resource, plan.stages[0].instance.gpus),
        storage_url=storage_url,
        poll_seconds=poll_seconds,
        progress=progress,
        **options,
    ).run()
    return StagedRun(
        tuning=tuning,
        plan=plan,
        leases=cluster.leases,
        dollars=cluster.bill(),
        billing=cluster.billing,
        prediction=prediction,
        notes=tuple(cluster.notes),
        preemptions=cluster.preemptions,
    )
