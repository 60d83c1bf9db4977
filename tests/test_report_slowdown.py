"""``optuna-seer report`` on a ``study.optimize`` run says how slow epochs ran against the plan.

The budget guard projects every running trial's rung at the slowdown the ledger shows
(``admission.SpendView``); the report prints the same reading so a user sees a profile that
was off (epochs here run 1.5 times the plan's time on a simulated clock).
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from optuna_seer import Budget, ClusterLimits, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer.cli.main import main

EPOCH_SECONDS = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("slowdown", [1.0, 1.5])
def test_report_prints_the_epoch_time_the_budget_guard_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slowdown: float
) -> None:
    plan = plan_seer(
        Budget(deadline="1h", dollars=1, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=EPOCH_SECONDS, scaling="linear", max_epochs=9),
        limits=ClusterLimits(max_gpus=4),
        max_configs=27,
    )
    assert len(plan.rungs) == 3
    clock = Clock()
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = optuna.create_study(
        study_name="run",
        storage=storage,
        direction="maximize",
        pruner=SeerPruner(plan=plan, clock=clock),
        sampler=SeerSampler(clock=clock),
    )

    def objective(trial: optuna.Trial) -> float:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        value = 0.0
        for epoch in range(1, plan.max_epochs + 1):
            clock.now += plan.rung_for_step(epoch - 1).epoch_seconds * slowdown
            value = quality * (1 - math.exp(-epoch / 3))
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=40)
    capsys.readouterr()
    assert main(["report", "--storage", storage, "--study", "run"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "the plan's time" in line)
    overall = float(line.split("took ")[1].split("x")[0])
    per_rung = [float(v) for v in line.split("per rung ")[1].split(":")[0].split(", ")]
    assert overall == pytest.approx(slowdown, abs=0.01)
    assert per_rung == pytest.approx([slowdown] * len(plan.rungs), abs=0.01)
