"""What one trial of the user's training costs in time: the input to every planner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math

from optuna_seer.scaling import ScalingCurve


def _whole(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name}={value!r} must be a whole number (int), not {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}.")
    return value


@dataclass(frozen=True)
class Workload:
    """The training job every trial runs, as the planner sees it.

    Args:
        epoch_seconds: Seconds one epoch takes on one GPU (a measured profile beats a guess).
        scaling: How much faster ``k`` GPUs train one trial: see :class:`ScalingCurve`.
        max_epochs: Epochs a configuration needs to be fully trained; the finalists get them.
        gpus_per_node: GPUs on one machine; trials up to this size live on one node.
        startup_seconds: Seconds to (re)launch a trial: process start-up, rendezvous and
            checkpoint load. Paid once per trial per rung, since survivors are relaunched.

    Example:
        >>> w = Workload(epoch_seconds=600.0, scaling="amdahl:0.95", max_epochs=40)
        >>> round(w.epoch_seconds_on(4), 1)
        172.5
    """

    epoch_seconds: float
    scaling: str | Mapping[int, float] | ScalingCurve
    max_epochs: int
    gpus_per_node: int = 8
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epoch_seconds", "startup_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number of seconds.")
            if not math.isfinite(value) or value < 0 or (name == "epoch_seconds" and value == 0):
                bound = "positive" if name == "epoch_seconds" else "non-negative"
                raise ValueError(f"{name}={value!r} must be {bound} and finite.")
        _whole(self.max_epochs, "max_epochs", 1)
        _whole(self.gpus_per_node, "gpus_per_node", 1)
        object.__setattr__(self, "scaling", ScalingCurve.parse(self.scaling))

    @property
    def curve(self) -> ScalingCurve:
        assert isinstance(self.scaling, ScalingCurve)
        return self.scaling

    def epoch_seconds_on(self, gpus: int) -> float:
        """Seconds one epoch takes on ``gpus`` GPUs: ``t1 / s(k)``."""
        return float(self.epoch_seconds) / self.curve.speedup(gpus)
