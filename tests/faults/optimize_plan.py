"""The plan of the ``study.optimize`` fault tests: 4 configurations, 1 GPU each, 6 epochs."""

from __future__ import annotations

from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload

PRICE = 3.0 / 3600
WORKLOAD = Workload(epoch_seconds=0.2, scaling="linear", max_epochs=6)
PLAN = Plan(
    rungs=schedule(
        [RungShape(4, 2, 1), RungShape(2, 6, 1)], WORKLOAD, PRICE, ClusterLimits(max_gpus=4)
    ),
    reduction_factor=2,
    deadline_s=3600.0,
    budget_dollars=50.0,
    price_per_gpu_second=PRICE,
    min_marginal_speedup=0.2,
)
