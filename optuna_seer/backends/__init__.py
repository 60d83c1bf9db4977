"""Where trials run: the backend interface and its implementations."""

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.backends.replay_curves import RecordedCurve

__all__ = [
    "Backend",
    "LaunchSpec",
    "LaunchState",
    "LaunchStatus",
    "RecordedCurve",
    "ReplayBackend",
]
