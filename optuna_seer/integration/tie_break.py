"""A second metric that breaks ties in SEER's final selection (e.g. the validation loss).

An accuracy on ``n`` validation examples takes only ``n + 1`` values, so on a small validation
set several finalists often score exactly the same (every one of them at 1.0, epoch after
epoch), and a tie broken by trial number is a coin toss. A worker can report a second,
finer-grained metric with the monitored one (:class:`~optuna_seer.worker.lightning.SeerCallback`'s
``tie_break="val_loss"``, or :meth:`~optuna_seer.worker.context.TrialContext.report`'s
``tie_break=``); the trial keeps its value at the last reported step in its
``seer:tie_break`` system attr, and :func:`~optuna_seer.integration.ranking.selection_key` ranks
finalists
tied on the monitored metric by it. It only ever separates ties: it never overrides the
monitored metric, so a study that reports none selects as before.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> from optuna_seer._optuna import storage_of, trial_id_of
    >>> record_tie_break(storage_of(study), trial_id_of(trial), 3, TieBreak("val_loss", 0.21))
    >>> frozen = study.trials[0]
    >>> tie_break_key(frozen, step=3)  # lower is better: the loss itself
    0.21
    >>> tie_break_key(frozen, step=4)  # not reported at the step being ranked: last
    inf
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Literal

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_seer.integration.keys import TRIAL_TIE_BREAK

MODES = ("min", "max")


@dataclass(frozen=True)
class TieBreak:
    """One reported value of the tie-break metric.

    Args:
        name: The metric's name (e.g. ``"val_loss"``), kept for reports.
        value: Its value; ``None`` or a non-finite value (a diverged model's loss) ranks last.
        mode: ``"min"`` when lower is better (a loss), ``"max"`` when higher is.

    Raises:
        ValueError: An empty ``name`` or a ``mode`` other than ``"min"``/``"max"``.
    """

    name: str
    value: float | None
    mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"TieBreak name={self.name!r} must name a metric, e.g. 'val_loss'.")
        if self.mode not in MODES:
            raise ValueError(
                f"TieBreak mode={self.mode!r} must be 'min' (lower is better, a loss) or 'max'."
            )
        if self.value is not None and (
            isinstance(self.value, bool) or not isinstance(self.value, (int, float))
        ):
            raise TypeError(f"TieBreak value={self.value!r} must be a number or None.")


def record_tie_break(storage: BaseStorage, trial_id: int, step: int, tie: TieBreak) -> None:
    """Keep ``tie`` as the trial's tie-break value at ``step`` (one system-attr write).

    Call it when the monitored value of ``step`` is written (not when a retried launch
    re-reports an epoch already recorded), so the attr holds the value at the trial's last
    reported step.
    """
    value = None if tie.value is None or not math.isfinite(tie.value) else float(tie.value)
    storage.set_trial_system_attr(
        trial_id,
        TRIAL_TIE_BREAK,
        {"name": tie.name, "mode": tie.mode, "step": step, "value": value},
    )


def tie_break_key(trial: FrozenTrial, step: int) -> float:
    """Sort key, lower first: the trial's tie-break value at ``step``, signed by its mode.

    ``inf`` (ranked last) when the trial reported none, none at ``step`` (the step its
    monitored value is ranked at), or a non-finite one.
    """
    record = trial.system_attrs.get(TRIAL_TIE_BREAK)
    if not isinstance(record, dict) or record.get("step") != step:
        return math.inf
    value = record.get("value")
    if value is None:
        return math.inf
    return float(value) if record.get("mode", "min") == "min" else -float(value)
