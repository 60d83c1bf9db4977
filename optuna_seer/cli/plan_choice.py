"""The plan ``optuna-seer plan`` prints and ``optuna-seer tune`` runs, chosen once from the same
arguments, so that the plan a user reads is the plan that runs.

* ``--objective min-cost``: RubberBand's cheapest plan whose ``--quantile`` completion time
  meets ``--deadline``; with spot offers (``--spot-mix``) each stage on spot or on demand.
* ``--objective max-accuracy``: SEER's plan, the most configurations that fit the deadline and
  ``--budget`` on the first instance type, holding at ``--quantile`` of the profile's epoch
  spread (``epoch_cv``), not only in expectation.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TextIO

from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    RubberBandResult,
    SuccessiveHalvingJob,
    plan_rubberband,
)
from optuna_seer.planning.seer import plan_seer
from optuna_seer.planning.simulator import CloudModel
from optuna_seer.planning.spot import SpotOffer, plan_spot_mix
from optuna_seer.planning.stage_plan import ElasticPlan


@dataclass(frozen=True)
class PlanChoice:
    """The chosen plan and what chose it.

    Attributes:
        plan: The plan to print, simulate and run.
        rubberband: RubberBand's result (``min-cost``); ``None`` for ``max-accuracy``.
        seer: SEER's rung plan (``max-accuracy``); ``None`` for ``min-cost``.
    """

    plan: ElasticPlan
    rubberband: RubberBandResult | None = None
    seer: Plan | None = None


def choose_plan(
    args: argparse.Namespace,
    profile: Profile,
    instances: tuple[PriceQuote, ...],
    cloud: CloudModel,
    max_gpus: int,
    offers: list[SpotOffer],
    out: TextIO,
) -> PlanChoice:
    """The plan for ``args`` (``objective``, ``deadline``, ``budget``, ``configs``,
    ``reduction_factor``, ``max_epochs``, ``min_resource``, ``quantile``, ``samples``,
    ``seed``) on ``instances`` with at most ``max_gpus`` GPUs; prints the planner's summary
    (and, with ``offers``, both markets' alternatives; ``min-cost`` only, as
    :func:`~optuna_seer.cli.plan_commands.spot_offers` requires) to ``out``.

    Raises:
        ValueError: ``max-accuracy`` without ``args.budget``.
        InfeasiblePlanError: No plan meets the deadline (and budget).
    """
    if args.objective == "min-cost":
        problem = PlanningProblem(
            SuccessiveHalvingJob.geometric(
                args.configs, args.reduction_factor, args.max_epochs, args.min_resource
            ),
            profile,
            instances,
            args.deadline,
            cloud=cloud,
            max_gpus=max_gpus,
            quantile=args.quantile,
            samples=args.samples,
            seed=args.seed,
        )
        if offers:
            plans = plan_spot_mix(problem, offers)
            print(plans.summary(), file=out)
            found = plans.mixed
        else:
            found = plan_rubberband(problem)
        print(found.summary(), file=out)
        return PlanChoice(found.plan, rubberband=found)
    if args.budget is None:
        raise ValueError("--objective max-accuracy needs --budget (dollars).")
    instance = instances[0]
    seer = plan_seer(
        Budget(args.deadline, args.budget, instance.dollars_per_gpu_hour),
        profile.workload(args.max_epochs, gpus_per_node=instance.gpus),
        args.reduction_factor,
        limits=ClusterLimits(
            max_gpus=max_gpus, provisioning_seconds=cloud.queue_seconds + cloud.boot_seconds
        ),
        min_resource=args.min_resource,
        max_configs=args.configs,
        epoch_cv=profile.epoch_cv,  # deadline and budget hold at --quantile
        quantile=args.quantile,
    )
    print(seer, file=out)
    return PlanChoice(ElasticPlan.from_seer(seer, instance), seer=seer)
