"""optuna-seer: hyperparameter tuning that finishes on time and within a dollar budget.

One import path for everything a user needs::

    from optuna_seer import Budget, Workload, SeerPruner, SeerSampler, plan_seer, gpus_for
    from optuna_seer import ElasticTuner, LocalBackend, SkyPilotBackend, SeerCallback

``SeerCallback`` imports ``pytorch_lightning`` on first use only, so the core works without it.
"""

from typing import TYPE_CHECKING, Any

from optuna_seer.backends.base import Backend, LaunchSpec
from optuna_seer.backends.local import LocalBackend
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.execution.report import format_report, plot_timeline
from optuna_seer.execution.tuner import (
    ElasticTuner,
    StudyMismatchError,
    TuningResult,
    resumable_study_name,
)
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.ledger import Ledger, read_ledger
from optuna_seer.integration.pruner import RungDecision, SeerPruner
from optuna_seer.integration.ranking import (
    best_finalist,
    rank_key,
    rank_trials,
    rung_score,
    selection_key,
)
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.tie_break import TieBreak
from optuna_seer.integration.trial_gpus import gpus_for
from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.budget import Budget, parse_duration
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.placement import place
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile, fit_profile
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    RubberBandResult,
    SuccessiveHalvingJob,
    best_static_plan,
    plan_rubberband,
)
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.seer import InfeasiblePlanError, gpu_candidates, plan_seer
from optuna_seer.planning.simulator import CloudModel, SimulationResult, simulate
from optuna_seer.planning.stage_plan import ElasticPlan, Stage
from optuna_seer.planning.workload import Workload
from optuna_seer.pricing.sources import resolve_quote
from optuna_seer.profiling.harness import measure_on_backend
from optuna_seer.storage.proxy import StorageProxy
from optuna_seer.worker.checkpoints import CorruptCheckpointError, open_store
from optuna_seer.worker.context import TrialContext, trial_context

if TYPE_CHECKING:
    from optuna_seer.worker.lightning import SeerCallback

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BillingRule",
    "Budget",
    "CloudModel",
    "ClusterLimits",
    "CorruptCheckpointError",
    "ElasticPlan",
    "ElasticTuner",
    "InfeasiblePlanError",
    "LaunchSpec",
    "Ledger",
    "LocalBackend",
    "Plan",
    "PlanningProblem",
    "PriceQuote",
    "Profile",
    "RecordedCurve",
    "ReplayBackend",
    "RubberBandResult",
    "Rung",
    "RungDecision",
    "ScalingCurve",
    "SeerCallback",
    "SeerPruner",
    "SeerSampler",
    "SimulationResult",
    "SkyPilotBackend",
    "Stage",
    "StorageProxy",
    "StudyMismatchError",
    "SuccessiveHalvingJob",
    "TieBreak",
    "TrialContext",
    "TuningResult",
    "Workload",
    "best_finalist",
    "best_static_plan",
    "fit_profile",
    "format_report",
    "gpu_candidates",
    "gpus_for",
    "measure_on_backend",
    "open_store",
    "parse_duration",
    "place",
    "plan_rubberband",
    "plan_seer",
    "plot_timeline",
    "rank_key",
    "rank_trials",
    "read_ledger",
    "resolve_quote",
    "resumable_study_name",
    "rung_score",
    "selection_key",
    "simulate",
    "stop_reason",
    "trial_context",
]


def __getattr__(name: str) -> Any:
    if name == "SeerCallback":
        from optuna_seer.worker.lightning import SeerCallback

        return SeerCallback
    raise AttributeError(f"module 'optuna_seer' has no attribute {name!r}")
