"""Where trials run: the backend interface and its implementations."""

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus

__all__ = ["Backend", "LaunchSpec", "LaunchState", "LaunchStatus"]
