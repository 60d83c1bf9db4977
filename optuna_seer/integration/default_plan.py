"""The plan the Optuna pair makes from a budget and a workload: for the workers here unless
told otherwise (``limits``)."""

from __future__ import annotations

from collections.abc import Mapping

from optuna_seer._logging import get_logger
from optuna_seer._machine import default_pool
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.seer import InfeasiblePlanError, plan_seer
from optuna_seer.planning.workload import Workload

_logger = get_logger(__name__)


def plan_for_pool(
    budget: Budget,
    workload: Workload,
    reduction_factor: int,
    *,
    limits: ClusterLimits | None,
    min_resource: int,
    min_marginal_speedup: float,
    max_configs: int,
    epoch_cv: float | Mapping[int, float] = 0.0,
    quantile: float = 0.95,
) -> Plan:
    """:func:`~optuna_seer.planning.seer.plan_seer`, with ``limits=None`` read as the workers
    here (:func:`optuna_seer._machine.default_pool`: visible GPUs, else CPU slots, or
    ``OPTUNA_SEER_WORKERS``). The pool it assumed is logged, and named in the error when no
    plan fits it. The pool's workers the last rung's finalists leave idle train more of them
    (:func:`~optuna_seer.planning.seer.plan_seer`, step 4). With ``epoch_cv`` above 0 the
    deadline and the budget hold at the ``quantile`` of the stragglers, the rungs' GPUs billed
    until each wave's slowest trial ends (a pool holds them), as ``plan_seer`` documents.

    Example (two workers: a rung's trials run in waves of two):
        >>> from optuna_seer import Budget, ClusterLimits, Workload
        >>> plan = plan_for_pool(Budget(deadline="1h", dollars=10, price_per_gpu_hour=1.0),
        ...                      Workload(epoch_seconds=60, scaling="linear", max_epochs=9), 3,
        ...                      limits=ClusterLimits(max_gpus=2), min_resource=1,
        ...                      min_marginal_speedup=0.2, max_configs=1000)
        >>> [rung.n_trials for rung in plan.rungs], plan.n_configs < 255  # 255 with no cap
        ([50, 17, 6], True)
    """
    pool = None
    if limits is None:
        pool = default_pool()
        limits = ClusterLimits(max_gpus=pool.size)
    try:
        plan = plan_seer(
            budget,
            workload,
            reduction_factor,
            limits=limits,
            min_resource=min_resource,
            min_marginal_speedup=min_marginal_speedup,
            max_configs=max_configs,
            epoch_cv=epoch_cv,
            quantile=quantile,
        )
    except InfeasiblePlanError as error:
        if pool is None:
            raise
        raise InfeasiblePlanError(
            f"{error} (planned for the workers here, {pool.source}; pass "
            "limits=ClusterLimits(max_gpus=N) to plan for another pool)",
            error.min_deadline_s,
            error.min_dollars,
        ) from None
    if pool is not None:
        _logger.info(
            "SEER plans for the workers here (%s): %d configurations; pass "
            "limits=ClusterLimits(max_gpus=N) to plan for another pool.",
            pool.source,
            plan.n_configs,
        )
    return plan
