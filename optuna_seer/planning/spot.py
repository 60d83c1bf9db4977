"""Spot-aware RubberBand plans: which stages may run on spot and still meet the deadline.

A :class:`SpotOffer` pairs an instance type's on-demand and spot prices with how often its
spot instances are reclaimed (interruptions per node-hour). Each interruption costs a
*recovery*: a new node (queueing and boot), a relaunch (the trial's start-up) and the work
since the trial's last checkpoint (half a checkpoint interval on average; with checkpoints
only at rung ends, half the launch's epochs): :func:`recovery_seconds`.
:func:`spot_risks` lists, per instance type and market, the price, the probability that a
node is reclaimed within an hour (``1 − e^(−rate)``) and the *effective* price per useful
node-hour (``$/h ÷ (1 − rate × recovery)``), which is what spot really costs.

:func:`plan_spot_mix` plans with RubberBand over both markets of every offer, the simulator
drawing each spot stage's interruptions at its own type's rate (Poisson per node-hour,
common random numbers): the chosen plan puts each stage on spot or on demand, whichever is
cheapest while the p95 (the problem's quantile) of the completion time still meets the
deadline. It also plans all-on-demand and all-spot, the baselines it is never dearer than.
:func:`expected_recovery` says, per stage of a plan, what its reclaims are expected to cost
(reclaims, seconds and dollars: the plan simulated with and without them, same draws), which
``optuna-seer plan --spot-mix --png`` marks on the chart.
Pure: no I/O; prices and rates come from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
import math

from optuna_seer.planning.plan import format_seconds, format_table
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import plan_rubberband
from optuna_seer.planning.rubberband_problem import PlanningProblem, RubberBandResult
from optuna_seer.planning.seer import InfeasiblePlanError
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.stage_plan import ElasticPlan

__all__ = [
    "SpotOffer",
    "SpotPlans",
    "SpotRisk",
    "StageRecovery",
    "expected_recovery",
    "plan_spot_mix",
    "recovery_seconds",
    "spot_cloud",
    "spot_risks",
]


@dataclass(frozen=True)
class SpotOffer:
    """One instance type on both markets, and how often its spot nodes are reclaimed.

    Example:
        >>> od = PriceQuote("p3.2xlarge", "V100", 1, 3.06)
        >>> offer = SpotOffer(od, PriceQuote("p3.2xlarge", "V100", 1, 0.92, market="spot"), 0.1)
        >>> round(offer.discount, 2)
        0.7
    """

    on_demand: PriceQuote
    spot: PriceQuote
    interruptions_per_node_hour: float

    def __post_init__(self) -> None:
        od, spot = self.on_demand, self.spot
        if od.market != "on-demand" or spot.market != "spot":
            raise ValueError(
                f"a SpotOffer pairs an on-demand and a spot quote; got markets {od.market!r} "
                f"and {spot.market!r}."
            )
        if (od.instance_type, od.gpus, od.accelerator) != (
            spot.instance_type,
            spot.gpus,
            spot.accelerator,
        ):
            raise ValueError(
                f"the on-demand quote ({od.instance_type}, {od.gpus} × {od.accelerator}) and "
                f"the spot quote ({spot.instance_type}, {spot.gpus} × {spot.accelerator}) must "
                "be the same instance type."
            )
        rate = self.interruptions_per_node_hour
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"interruptions_per_node_hour={rate!r} must be a number.")
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"interruptions_per_node_hour={rate!r} must be >= 0 and finite.")

    @property
    def discount(self) -> float:
        """The spot price's saving, as a fraction of the on-demand price."""
        return 1.0 - self.spot.dollars_per_hour / self.on_demand.dollars_per_hour


def recovery_seconds(
    profile: Profile, cloud: CloudModel, gpus_per_trial: int, launch_epochs: int
) -> float:
    """Mean seconds one interruption costs a trial: re-provisioning, relaunch, lost work.

    Example:
        >>> p = Profile(epoch_seconds=600, scaling="linear", startup_seconds=60)
        >>> recovery_seconds(p, CloudModel(queue_seconds=60, boot_seconds=120), 1, 9)
        540.0
        >>> recovery_seconds(p, CloudModel(checkpoint_interval_epochs=0), 1, 9)
        2760.0
    """
    lost = cloud.lost_epochs(launch_epochs) * profile.epoch_seconds_on(gpus_per_trial)
    return cloud.queue_seconds + cloud.boot_seconds + profile.startup_on(gpus_per_trial) + lost


@dataclass(frozen=True)
class SpotRisk:
    """An instance type on one market: its price, risk and effective price.

    Attributes:
        instance_type: The instance type.
        market: ``"on-demand"`` or ``"spot"``.
        dollars_per_hour: The listed price per node-hour.
        reclaimed_within_hour: Probability that a node is reclaimed within an hour.
        recovery_s: Mean seconds one interruption costs.
        effective_dollars_per_hour: Price per node-hour of useful work, recoveries paid for
            (infinite when recoveries would take all the time).
    """

    instance_type: str
    market: str
    dollars_per_hour: float
    reclaimed_within_hour: float
    recovery_s: float
    effective_dollars_per_hour: float


def spot_risks(
    offers: Sequence[SpotOffer], profile: Profile, cloud: CloudModel, launch_epochs: int = 1
) -> list[SpotRisk]:
    """Price × preemption risk per instance type and market (a trial of one node's GPUs
    training ``launch_epochs`` per launch).

    Example:
        >>> od = PriceQuote("p3.2xlarge", "V100", 1, 3.06)
        >>> offer = SpotOffer(od, PriceQuote("p3.2xlarge", "V100", 1, 0.92, market="spot"), 0.5)
        >>> p = Profile(epoch_seconds=600, scaling="linear", startup_seconds=60)
        >>> [(r.market, round(r.effective_dollars_per_hour, 3))
        ...  for r in spot_risks([offer], p, CloudModel(boot_seconds=120))]
        [('on-demand', 3.06), ('spot', 0.986)]
    """
    rows = []
    for offer in offers:
        gpus = offer.on_demand.gpus
        recovery = recovery_seconds(profile, cloud, gpus, launch_epochs)
        for quote, rate in (
            (offer.on_demand, 0.0),
            (offer.spot, offer.interruptions_per_node_hour),
        ):
            useful = 1.0 - rate * recovery / 3600.0
            rows.append(
                SpotRisk(
                    instance_type=quote.instance_type,
                    market=quote.market,
                    dollars_per_hour=quote.dollars_per_hour,
                    reclaimed_within_hour=1.0 - math.exp(-rate),
                    recovery_s=recovery if rate else 0.0,
                    effective_dollars_per_hour=(
                        quote.dollars_per_hour / useful if useful > 0 else math.inf
                    ),
                )
            )
    return rows


def spot_cloud(cloud: CloudModel, offers: Sequence[SpotOffer]) -> CloudModel:
    """``cloud`` with each offer's spot interruption rate for its instance type."""
    rates = dict(cloud.spot_rates)
    rates.update((o.spot.instance_type, float(o.interruptions_per_node_hour)) for o in offers)
    return replace(cloud, spot_rates=tuple(sorted(rates.items())))


@dataclass(frozen=True)
class SpotPlans:
    """The spot-aware plan and its two baselines (``None``: no such plan meets the deadline).

    Attributes:
        mixed: Each stage on spot or on demand, the cheapest that meets the deadline.
        on_demand: Every stage on demand.
        spot: Every stage on spot.
        risks: :func:`spot_risks` of the offers.
    """

    mixed: RubberBandResult
    on_demand: RubberBandResult | None
    spot: RubberBandResult | None
    risks: tuple[SpotRisk, ...]

    def summary(self) -> str:
        """The risk table and the three plans' markets, cost and p95 time."""
        risk_rows = [
            [
                r.instance_type,
                r.market,
                f"${r.dollars_per_hour:,.2f}",
                f"{r.reclaimed_within_hour:.1%}",
                f"{r.recovery_s:.0f}",
                f"${r.effective_dollars_per_hour:,.2f}",
            ]
            for r in self.risks
        ]
        lines = [
            format_table(
                ["instance", "market", "$/h", "reclaimed/h", "recovery s", "effective $/h"],
                risk_rows,
            )
        ]
        for name, found in (
            ("spot/on-demand mix", self.mixed),
            ("all on-demand", self.on_demand),
            ("all spot", self.spot),
        ):
            if found is None:
                lines.append(f"{name:>18}: no plan meets the deadline")
                continue
            markets = "/".join(s.instance.market for s in found.plan.stages)
            lines.append(
                f"{name:>18}: ${found.stats.cost:,.2f} mean, p95 "
                f"{format_seconds(found.stats.jct_quantile)} ({markets})"
            )
        return "\n".join(lines)


def plan_spot_mix(problem: PlanningProblem, offers: Sequence[SpotOffer]) -> SpotPlans:
    """The cheapest plan over both markets of ``offers`` that meets the deadline at the
    problem's quantile, with its all-on-demand and all-spot baselines (``problem.instances``
    is replaced by the offers' quotes; its cloud gets their interruption rates).

    Raises:
        InfeasiblePlanError: Not even an all-on-demand or mixed plan meets the deadline.

    Example:
        >>> from optuna_seer.planning.rubberband import SuccessiveHalvingJob
        >>> od = PriceQuote("g1", "V100", 1, 3.0)
        >>> offer = SpotOffer(od, PriceQuote("g1", "V100", 1, 0.9, market="spot"), 0.2)
        >>> problem = PlanningProblem(
        ...     SuccessiveHalvingJob.geometric(9, 3, 9),
        ...     Profile(epoch_seconds=600, scaling="amdahl:0.95", startup_seconds=60),
        ...     (od,), deadline_s=3 * 3600, max_gpus=9, samples=100)
        >>> plans = plan_spot_mix(problem, [offer])
        >>> plans.mixed.stats.cost <= min(p.stats.cost for p in (plans.on_demand, plans.spot) if p)
        True
    """
    if not offers:
        raise ValueError("offers is empty: give at least one SpotOffer.")
    base = replace(problem, cloud=spot_cloud(problem.cloud, offers))
    on_demand_quotes = tuple(o.on_demand for o in offers)
    spot_quotes = tuple(o.spot for o in offers)
    results: dict[str, RubberBandResult | None] = {}
    error: InfeasiblePlanError | None = None
    for name, quotes in (
        ("on-demand", on_demand_quotes),
        ("spot", spot_quotes),
        ("mixed", on_demand_quotes + spot_quotes),
    ):
        try:
            results[name] = plan_rubberband(replace(base, instances=quotes))
        except InfeasiblePlanError as exc:
            results[name] = None
            error = error or exc
    feasible = [r for r in results.values() if r is not None]
    if not feasible:
        assert error is not None
        raise error
    # The mixed search starts from its own static and fastest plans; a baseline it did not
    # reach is also a mix (of one market), so the cheapest of the three is kept.
    best = min(feasible, key=lambda r: r.stats.cost)
    return SpotPlans(
        mixed=best,
        on_demand=results["on-demand"],
        spot=results["spot"],
        risks=tuple(spot_risks(offers, problem.profile, base.cloud)),
    )


@dataclass(frozen=True)
class StageRecovery:
    """What a stage's spot reclaims are expected to cost (all 0 on demand).

    Attributes:
        market: The stage's market, ``"spot"`` or ``"on-demand"``.
        reclaims: Expected reclaims of the stage's nodes.
        seconds: Expected seconds the recoveries add to the stage.
        dollars: Expected dollars they add to the bill (billing rounding included).
    """

    market: str
    reclaims: float
    seconds: float
    dollars: float


def expected_recovery(
    plan: ElasticPlan,
    profile: Profile,
    cloud: CloudModel,
    *,
    samples: int = 1000,
    seed: int = 0,
) -> tuple[StageRecovery, ...]:
    """Per stage of ``plan``, the expected reclaims and what recovering from them costs: the
    plan simulated at ``cloud``'s spot rates less the same plan without reclaims (the same
    draws otherwise, so the difference is the reclaims' alone).

    Example:
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> spot = PriceQuote("g1", "V100", 1, 0.9, market="spot")
        >>> plan = ElasticPlan((Stage(2, 1, 1, spot, 2),
        ...                     Stage(1, 3, 1, PriceQuote("g1", "V100", 1, 3.0), 1)))
        >>> p = Profile(epoch_seconds=3600, scaling="linear", startup_seconds=60)
        >>> cloud = CloudModel(spot_interruptions_per_node_hour=0.5)
        >>> first, second = expected_recovery(plan, p, cloud)
        >>> first.market, first.reclaims > 0, first.dollars > 0, second.dollars
        ('spot', True, True, 0.0)
    """
    calm = replace(cloud, spot_interruptions_per_node_hour=0.0, spot_rates=())
    risky = simulate(plan, profile, cloud, samples=samples, seed=seed)
    base = simulate(plan, profile, calm, samples=samples, seed=seed)
    rows = []
    previous_extra = 0.0
    for index, stage in enumerate(plan.stages):
        seconds = (risky.stage_end_s[index] - risky.stage_start_s[index]) - (
            base.stage_end_s[index] - base.stage_start_s[index]
        )
        extra = risky.stage_cost[index] - base.stage_cost[index]
        dollars, previous_extra = extra - previous_extra, extra
        reclaims = 0.0
        if stage.instance.market == "spot" and seconds > 0:
            previous = plan.stages[index - 1].resource if index else 0
            k = stage.gpus_per_trial
            penalty = (
                cloud.queue_seconds
                + cloud.boot_seconds
                + profile.startup_on(k)
                + cloud.lost_epochs(stage.resource - previous) * profile.epoch_seconds_on(k)
            )
            reclaims = seconds / penalty if penalty > 0 else 0.0
        rows.append(
            StageRecovery(
                market=stage.instance.market,
                reclaims=max(0.0, reclaims),
                seconds=max(0.0, seconds),
                dollars=max(0.0, dollars),
            )
        )
    return tuple(rows)
