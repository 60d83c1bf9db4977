"""The asynchronous budget guard's per-rung slowdown (``admission.rung_scales``).

A rung's scale multiplies every running trial's commitment to its rung's end. Measured from
one trial stopped a few epochs into the last rung, it was mostly that launch's start-up
(a replayed wine study: 2.06 times the plan at the last rung, $16.65 "committed" to three
finalists, so the configuration that would have been selected was refused for budget).
"""

from __future__ import annotations

import pytest

from optuna_seer import Budget, Workload, plan_seer
from optuna_seer.integration.admission import rung_scales


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    return plan_seer(
        Budget(deadline="1h", dollars=5, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=60, scaling="linear", max_epochs=9),
    )


def test_a_few_epochs_measured_in_a_rung_do_not_set_its_scale_alone(plan) -> None:  # type: ignore[no-untyped-def]
    as_planned = (600.0, 600.0)
    start_up_and_one_epoch = (90.0, 60.0)  # 1.5 times the plan
    overall, scales = rung_scales(plan, [as_planned, as_planned, start_up_and_one_epoch])
    assert overall == pytest.approx(1290 / 1260)
    assert scales[:2] == (pytest.approx(1.0, abs=0.01), pytest.approx(1.0, abs=0.01))
    assert 1.0 < scales[2] < 1.1  # pooled with one planned trial's 360 GPU-seconds there


def test_a_rung_measured_over_many_trials_keeps_its_own_scale(plan) -> None:  # type: ignore[no-untyped-def]
    slow_last_rung = (360.0 * 40 * 1.5, 360.0 * 40)  # 40 trials' 6 epochs, all 1.5x
    _, scales = rung_scales(plan, [(600.0, 600.0), (600.0, 600.0), slow_last_rung])
    assert scales[2] == pytest.approx(1.5, abs=0.02)


def test_nothing_measured_is_the_plan(plan) -> None:  # type: ignore[no-untyped-def]
    assert rung_scales(plan, [(0.0, 0.0)] * 3) == (1.0, (1.0, 1.0, 1.0))
