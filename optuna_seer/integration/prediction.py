"""What the simulator predicted for a run, kept in the study's storage beside the run.

``optuna-seer plan`` (and any caller of :func:`store_prediction`) writes the prediction;
``optuna-seer report --storage URL --study NAME`` reads it back with :func:`stored_prediction`
and sets it next to what the run measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer.integration.keys import STUDY_PREDICTION
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import SimulationResult, used_gpu_seconds
from optuna_seer.planning.stage_plan import ElasticPlan


def prediction_summary(result: SimulationResult) -> dict[str, float]:
    """The simulated time (seconds) and cost (dollars): mean, p50 and p95 of each."""
    return {
        "jct_mean_s": result.jct_mean,
        "jct_p50_s": result.jct_p50,
        "jct_p95_s": result.jct_p95,
        "cost_mean": result.cost_mean,
        "cost_p50": result.cost_p50,
        "cost_p95": result.cost_p95,
    }


def store_prediction(
    study: optuna.Study, plan: ElasticPlan, profile: Profile, result: SimulationResult
) -> dict[str, Any]:
    """Keep what the simulator predicts for ``study``'s run in its storage, where
    ``optuna-seer report --storage URL --study NAME`` finds it after the run.

    Besides the simulated distribution it stores the per-use cost
    (:func:`~optuna_seer.planning.simulator.used_gpu_seconds` × price): the quantity SEER's ledger
    measures. Returns the record.
    """
    price_per_gpu_second = plan.stages[0].instance.dollars_per_gpu_hour / 3600.0
    record: dict[str, Any] = {
        **prediction_summary(result),
        "used_cost": used_gpu_seconds(plan, profile) * price_per_gpu_second,
        "plan": plan.to_dict(),
        "profile": profile.to_dict(),
    }
    storage_of(study).set_study_system_attr(study_id_of(study), STUDY_PREDICTION, record)
    return record


def stored_prediction(study_attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record :func:`store_prediction` kept, from a study's system attrs; ``None`` if none."""
    stored = study_attrs.get(STUDY_PREDICTION)
    return None if stored is None else dict(stored)
