"""The benchmark's side of promotion by the validation loss: the replayed arms, the rule
replay that measures it over many seeds, ``run.py --monitor val_loss`` and the gap table
that counts the Optuna arms of such a run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import optuna
import pytest

from benchmarks import curves as recorded
from benchmarks import gap_closed, rung_rules
from benchmarks import run as run_script
from benchmarks.baselines import Scenario, run_plan
from optuna_seer import plan_seer
from optuna_seer.backends.replay import RecordedCurve

EPOCHS = 9
SCENARIO = Scenario("test", deadline_s=1800.0, dollars=6.0, scaling="babi", epoch_seconds=60.0)


def setup_module() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _curve(i: int) -> RecordedCurve:
    """Accuracy and loss that disagree early: in the first epochs the accuracy favours the
    fast starters (``i < 12``), the loss the configurations that end best (high ``i``)."""
    final = 0.6 + 0.015 * i
    start = 0.3 if i < 12 else 0.0
    val = tuple(round(final * (1 - 0.5 ** (e + 1)) + start / (e + 1) ** 2, 4) for e in range(9))
    loss = tuple(round(1.5 - final + 0.01 * e, 4) for e in range(9))
    return RecordedCurve(val_acc=val, test_acc=tuple(v - 0.01 for v in val), val_loss=loss)


@pytest.fixture(scope="module")
def curve_set() -> recorded.CurveSet:
    return recorded.CurveSet(
        dataset="synthetic",
        configs=tuple({"config_id": i} for i in range(24)),
        curves=tuple(_curve(i) for i in range(24)),
        epoch_seconds=(0.01,) * 24,
    )


def test_the_loss_rule_replays_what_the_pruner_decides_with_promote_by_tie_break(
    curve_set: recorded.CurveSet,
) -> None:
    plan = plan_seer(SCENARIO.budget, SCENARIO.workload(EPOCHS), 3, max_configs=24)
    differs = 0
    for seed in range(4):
        outcome = run_plan("static-plan", plan, SCENARIO, curve_set, seed, promote_by="tie_break")
        by_loss = rung_rules.select(curve_set, plan, seed, "loss", "mean, loss")
        assert by_loss == outcome.config_id, seed
        differs += by_loss != rung_rules.select(curve_set, plan, seed, "ties", "mean, loss")
    assert differs, "the curves must make the two promotion rules disagree"


def _write(directory: Path, curves: list[dict[str, object]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = {"dataset": "toy", "configs": [{"config_id": i} for i in range(len(curves))]}
    data["curves"] = curves
    with gzip.open(directory / "toy.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(data, handle)


def test_monitor_val_loss_reports_the_negative_loss(tmp_path: Path) -> None:
    curve = {"val_acc": [0.5, 0.7], "test_acc": [0.4, 0.6], "epoch_seconds": [1.0]}
    _write(tmp_path, [{**curve, "val_loss": [0.9, None]}])
    loaded = recorded.load("toy", tmp_path, monitor="val_loss").curves[0]
    assert loaded.val_acc == (-0.9, -recorded.DIVERGED_LOSS)  # a diverged epoch is the worst
    assert loaded.test_acc == (0.4, 0.6)  # the selected model is still scored by accuracy
    assert recorded.load("toy", tmp_path).curves[0].val_acc == (0.5, 0.7)
    with pytest.raises(ValueError, match=r"monitor='loss'.*'val_acc', 'val_loss'"):
        recorded.load("toy", tmp_path, monitor="loss")
    _write(tmp_path, [curve])
    with pytest.raises(ValueError, match="without a validation loss"):
        recorded.load("toy", tmp_path, monitor="val_loss")


def _cell(arms: dict[str, list[float]], oracle: float = 1.0) -> dict[str, object]:
    return {
        "dataset": "wine",
        "scenario": {"name": "30m"},
        "summary": {
            **{n: {"test_mean": sum(v) / len(v)} for n, v in arms.items()},
            "oracle": {"test_mean": oracle},
        },
        "runs": {n: [{"seed": s, "test_acc": a} for s, a in enumerate(v)] for n, v in arms.items()},
    }


def test_the_gap_counts_the_optuna_arms_of_another_run_too() -> None:
    mine = [_cell({"seer": [0.96, 0.98], "optuna-sha": [0.90, 0.92]})]
    loss_run = [_cell({"seer": [0.5, 0.5], "optuna-sha": [0.94, 0.96]})]
    alone = gap_closed.table(mine)
    assert "0.9100 optuna-sha | 0.9700 (+67%)" in alone
    merged = gap_closed.merge_baselines(mine, loss_run, "val_loss")
    both = gap_closed.table(merged)
    assert "0.9500 optuna-sha (val_loss) | 0.9700 (+40%)" in both  # the other run's SEER: no
    assert "+0.0200" in gap_closed.paired_table(merged)
    with pytest.raises(ValueError, match="not in the other run"):
        gap_closed.merge_baselines(mine, [{**loss_run[0], "dataset": "digits"}], "x")


def test_seer_curve_is_refused_by_name_when_the_arms_monitor_the_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its prior compares accuracies; over losses of other data sets it selected nonsense."""
    with pytest.raises(SystemExit):
        run_script.main(["--methods", "seer-curve", "--monitor", "val_loss", "--no-plot"])
    assert "--methods seer-curve needs --monitor val_acc, not 'val_loss'" in capsys.readouterr().err
