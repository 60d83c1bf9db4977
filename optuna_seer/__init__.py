"""optuna-seer: hyperparameter tuning that finishes on time and within a dollar budget.

One import path for everything a user needs::

    from optuna_seer import Budget, Workload, SeerPruner, SeerSampler, plan_seer, gpus_for
"""

from optuna_seer.budget import Budget, parse_duration
from optuna_seer.cost_model import ClusterLimits
from optuna_seer.ledger import Ledger, read_ledger
from optuna_seer.plan import Plan, Rung
from optuna_seer.pruner import RungDecision, SeerPruner
from optuna_seer.sampler import SeerSampler
from optuna_seer.scaling import ScalingCurve
from optuna_seer.seer_planner import InfeasiblePlanError, gpu_candidates, plan_seer
from optuna_seer.trial_attrs import gpus_for
from optuna_seer.workload import Workload

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "ClusterLimits",
    "InfeasiblePlanError",
    "Ledger",
    "Plan",
    "Rung",
    "RungDecision",
    "ScalingCurve",
    "SeerPruner",
    "SeerSampler",
    "Workload",
    "gpu_candidates",
    "gpus_for",
    "parse_duration",
    "plan_seer",
    "read_ledger",
]
