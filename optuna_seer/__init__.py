"""optuna-seer: hyperparameter tuning that finishes on time and within a dollar budget.

The names users need, in one place::

    from optuna_seer import Budget, Workload, SeerPruner, SeerSampler, plan_seer, rungs
    from optuna_seer import ElasticTuner, LocalBackend, SkyPilotBackend, SeerCallback

The planning core and the Optuna pair load with the package; the tuner, the backends and the
worker side (which may need torch, Lightning or SkyPilot) load on first use, so a driver that
only plans imports neither. Everything else is importable from its sub-package:
``optuna_seer.planning`` (pure planning core), ``optuna_seer.pricing``,
``optuna_seer.integration`` (Optuna), ``optuna_seer.execution``, ``optuna_seer.backends``,
``optuna_seer.worker``, ``optuna_seer.profiling``, ``optuna_seer.storage``, ``optuna_seer.cli``
(see ``docs/architecture.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_seer._lazy import lazy_names
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.tie_break import TieBreak
from optuna_seer.integration.trial_gpus import gpus_for
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import plan_rubberband
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.seer import InfeasiblePlanError, plan_seer
from optuna_seer.planning.simulator import simulate
from optuna_seer.planning.workload import Workload

if TYPE_CHECKING:
    from optuna_seer.backends.local import LocalBackend
    from optuna_seer.backends.replay import ReplayBackend
    from optuna_seer.backends.skypilot import SkyPilotBackend
    from optuna_seer.execution.report import format_report
    from optuna_seer.execution.trial_rungs import rungs
    from optuna_seer.execution.tuner import (
        ElasticTuner,
        StudyMismatchError,
        TuningResult,
        resumable_study_name,
    )
    from optuna_seer.execution.worker_pool import WorkerPool
    from optuna_seer.integration.progress import SeerProgress
    from optuna_seer.worker.context import TrialContext, trial_context
    from optuna_seer.worker.lightning import SeerCallback

__version__ = "0.1.0"

_LAZY = {
    "ElasticTuner": "optuna_seer.execution.tuner",
    "LocalBackend": "optuna_seer.backends.local",
    "ReplayBackend": "optuna_seer.backends.replay",
    "SeerCallback": "optuna_seer.worker.lightning",
    "SeerProgress": "optuna_seer.integration.progress",
    "SkyPilotBackend": "optuna_seer.backends.skypilot",
    "StudyMismatchError": "optuna_seer.execution.tuner",
    "TrialContext": "optuna_seer.worker.context",
    "TuningResult": "optuna_seer.execution.tuner",
    "format_report": "optuna_seer.execution.report",
    "resumable_study_name": "optuna_seer.execution.tuner",
    "trial_context": "optuna_seer.worker.context",
    "WorkerPool": "optuna_seer.execution.worker_pool",
    "rungs": "optuna_seer.execution.trial_rungs",
}

__all__ = [
    "Budget",
    "ClusterLimits",
    "ElasticTuner",
    "InfeasiblePlanError",
    "LocalBackend",
    "Plan",
    "PriceQuote",
    "Profile",
    "ReplayBackend",
    "Rung",
    "ScalingCurve",
    "SeerCallback",
    "SeerProgress",
    "SeerPruner",
    "SeerSampler",
    "SkyPilotBackend",
    "StudyMismatchError",
    "TieBreak",
    "TrialContext",
    "TuningResult",
    "WorkerPool",
    "Workload",
    "best_finalist",
    "format_report",
    "gpus_for",
    "plan_rubberband",
    "plan_seer",
    "resumable_study_name",
    "rungs",
    "simulate",
    "stop_reason",
    "trial_context",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
