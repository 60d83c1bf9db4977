"""The predicted-vs-measured benchmark's pure parts: plan specs, predictions, pooling."""

from __future__ import annotations

import pytest

from benchmarks.predict_vs_measure import parse_plan, pooled, predictions, quantile
from optuna_seer.planning.cost_model import RungShape
from optuna_seer.planning.profile import Measurement, Profile, fit_profile


def test_plan_spec_parses_and_rejects_garbage() -> None:
    assert parse_plan("4x1@1, 2x1@3") == (RungShape(4, 1, 1), RungShape(2, 3, 1))
    with pytest.raises(ValueError, match="TRIALSxWORKERS@EPOCHS"):
        parse_plan("4@1")


def test_predictions_apply_contention_per_wave() -> None:
    """3 one-slot trials on 2 slots at 2 epochs: a pair slowed 1.5x, then one alone."""
    shared = Profile(epoch_seconds=2.0, scaling="linear", startup_seconds=10.0, contention=1.5)
    alone = Profile(epoch_seconds=2.0, scaling="linear", startup_seconds=10.0)
    got = predictions("3x1@2", {"shared": shared, "alone": alone}, slots=2, price=3.6)
    assert got["shared"][0] == pytest.approx(1.5 * 14 + 14)
    assert got["alone"][0] == pytest.approx(2 * 14)
    # Ledger dollars: slot-seconds used, 2 launches slowed and 1 not, at $0.001/slot-second.
    assert got["shared"][1] == pytest.approx(0.001 * (2 * 1.5 * 14 + 14))


def test_pooled_profile_merges_samples_and_takes_the_median_contention() -> None:
    rounds = [
        fit_profile([Measurement(1, (1.0,), (10.0,))], contention={2: c}) for c in (1.1, 1.9, 1.3)
    ]
    merged = pooled(rounds, slots=2)
    assert merged.epoch_seconds == pytest.approx(1.0)
    assert merged.startup_on(1) == pytest.approx(10.0)
    assert merged.contention_on(2) == pytest.approx(1.3)
    assert quantile([0.3, 0.1, 0.2, 0.4], 0.5) == 0.2
