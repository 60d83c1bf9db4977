"""The recorded learning curves a :class:`~optuna_seer.backends.replay.ReplayBackend` plays back.

A :class:`RecordedCurve` holds one configuration's validation and test accuracy after each
epoch (and optionally its validation loss, reported as the tie-break metric :data:`VAL_LOSS`);
:func:`curve_for` picks the curve a launch replays: ``spec.params[config_param]``, an index into
the recorded curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

from optuna_seer.backends.base import LaunchSpec


@dataclass(frozen=True)
class RecordedCurve:
    """Validation and test accuracy of one configuration after each epoch (index 0 = epoch 1),
    and optionally its validation loss (``None`` where it was not finite), which a replayed
    worker reports as its tie-break metric (:mod:`optuna_seer.integration.tie_break`).

    Example:
        >>> curve = RecordedCurve(val_acc=(0.5, 0.8), test_acc=(0.4, 0.7), val_loss=(0.9, 0.4))
        >>> curve.epochs
        2
    """

    val_acc: tuple[float, ...]
    test_acc: tuple[float, ...]
    val_loss: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if not self.val_acc or len(self.val_acc) != len(self.test_acc):
            raise ValueError(
                f"a RecordedCurve needs as many validation as test values, at least one: got "
                f"{len(self.val_acc)} and {len(self.test_acc)}."
            )
        if self.val_loss is not None and len(self.val_loss) != len(self.val_acc):
            raise ValueError(
                f"a RecordedCurve's val_loss needs one value (or None) per epoch: got "
                f"{len(self.val_loss)} for {len(self.val_acc)} epochs."
            )
        for value in (*self.val_acc, *self.test_acc):
            if not math.isfinite(value):
                raise ValueError(f"recorded accuracy {value!r} is not finite.")

    @property
    def epochs(self) -> int:
        return len(self.val_acc)


VAL_LOSS = "val_loss"
"""The tie-break metric a replayed worker reports when its curve has a validation loss."""


def curve_for(
    curves: Sequence[RecordedCurve], spec: LaunchSpec, config_param: str
) -> RecordedCurve:
    """The curve the launch ``spec`` replays: ``curves[spec.params[config_param]]``.

    Raises:
        ValueError: The parameter is not the index of one of ``curves``, or that curve was
            recorded for fewer epochs than ``spec.target_epochs``.

    Example:
        >>> curves = [RecordedCurve((0.5,), (0.4,)), RecordedCurve((0.6, 0.7), (0.5, 0.6))]
        >>> spec = LaunchSpec("study", "", 0, {"config_id": 1}, rung=0, target_epochs=2,
        ...                   workers=1, checkpoint_uri="unused")
        >>> curve_for(curves, spec, "config_id").val_acc
        (0.6, 0.7)
    """
    config = spec.params.get(config_param)
    if isinstance(config, bool) or not isinstance(config, int):
        raise ValueError(
            f"trial {spec.trial_number}: params[{config_param!r}]={config!r} must be "
            f"the index of a recorded curve, an int in [0, {len(curves) - 1}]."
        )
    if not 0 <= config < len(curves):
        raise ValueError(
            f"trial {spec.trial_number}: {config_param}={config} is not a recorded "
            f"curve; valid: 0..{len(curves) - 1}."
        )
    curve = curves[config]
    if spec.target_epochs > curve.epochs:
        raise ValueError(
            f"trial {spec.trial_number}: target_epochs={spec.target_epochs} but curve "
            f"{config} was recorded for {curve.epochs} epochs."
        )
    return curve
