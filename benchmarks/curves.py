"""Load the learning curves ``record_curves.py`` wrote, as :class:`RecordedCurve` objects."""

from __future__ import annotations

from dataclasses import dataclass
import gzip
import json
import math
from pathlib import Path
from typing import Any

from optuna_seer.backends.replay import RecordedCurve

CURVES_DIR = Path(__file__).resolve().parent / "curves"


def validation_values(curve: RecordedCurve) -> list[float]:
    """A curve's validation accuracy per epoch, NaN where none was recorded (a diverged
    run): the form :class:`~optuna_seer.planning.learning_curves.CurvePrior` and
    :class:`~optuna_seer.planning.accuracy_model.AccuracyModel` take."""
    return [math.nan if v is None else v for v in curve.val_acc]


@dataclass(frozen=True)
class CurveSet:
    """One data set's recorded configurations and their curves (same order)."""

    dataset: str
    configs: tuple[dict[str, Any], ...]
    curves: tuple[RecordedCurve, ...]
    epoch_seconds: tuple[float, ...]
    """Measured mean CPU seconds per epoch of each configuration (noisy, shared machine)."""

    @property
    def epochs(self) -> int:
        return min(c.epochs for c in self.curves)

    def oracle_test_accuracy(self, epochs: int) -> float:
        """The best test accuracy of any configuration at ``epochs``: a bound no tuner beats."""
        return max(c.test_acc[epochs - 1] for c in self.curves)


def available(directory: Path = CURVES_DIR) -> list[str]:
    """Data sets with recorded curves in ``directory``."""
    return sorted(p.name.removesuffix(".json.gz") for p in directory.glob("*.json.gz"))


MONITORS = ("val_acc", "val_loss")
"""What replayed workers report as the trial's value: the validation accuracy, or the
validation loss (as its negative, so that every arm still maximizes)."""

DIVERGED_LOSS = 1e3
"""The loss a ``val_loss`` monitor reports where the recording has none (a diverged run):
worse than any recorded loss."""


def load(
    dataset: str,
    directory: Path = CURVES_DIR,
    *,
    val_loss: bool = True,
    monitor: str = "val_acc",
) -> CurveSet:
    """Read ``<directory>/<dataset>.json.gz``.

    With ``val_loss`` (and a recording that has it), replayed workers report the validation
    loss as their tie-break metric; ``val_loss=False`` leaves it out (SEER selecting on the
    validation accuracy alone).

    ``monitor="val_loss"``: every replayed worker reports the negative validation loss as the
    trial's value (what a user gets who monitors ``val_loss``), so pruners promote, and
    studies select, by the loss; the test accuracy still scores the selected model.

    Raises:
        FileNotFoundError: No such recording; the message lists the ones there are.
        ValueError: An unknown ``monitor``, or ``val_loss`` on a recording without losses.
    """
    if monitor not in MONITORS:
        raise ValueError(f"monitor={monitor!r} is not a recorded metric; valid: {MONITORS}")
    path = directory / f"{dataset}.json.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no recorded curves for {dataset!r} at {path}; available: {available(directory)}. "
            "Record them with benchmarks/record_curves.py."
        )
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    if monitor == "val_loss" and not all("val_loss" in c for c in data["curves"]):
        raise ValueError(f"monitor='val_loss': {path} has curves without a validation loss.")
    curves = tuple(
        RecordedCurve(
            val_acc=tuple(c["val_acc"])
            if monitor == "val_acc"
            else tuple(-(DIVERGED_LOSS if v is None else v) for v in c["val_loss"]),
            test_acc=tuple(c["test_acc"]),
            val_loss=tuple(c["val_loss"]) if val_loss and "val_loss" in c else None,
        )
        for c in data["curves"]
    )
    seconds = tuple(sum(c["epoch_seconds"]) / len(c["epoch_seconds"]) for c in data["curves"])
    return CurveSet(
        dataset=data["dataset"],
        configs=tuple(data["configs"]),
        curves=curves,
        epoch_seconds=seconds,
    )
