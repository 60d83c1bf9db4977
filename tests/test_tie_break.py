"""The tie-break metric: how a worker reports it, and how SEER's final selection uses it."""

from __future__ import annotations

from dataclasses import replace
import math
from pathlib import Path

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
import pytest

from benchmarks import curves as recorded
from benchmarks.baselines import (
    Scenario,
    config_order,
    run_optuna_pruner,
    run_plan,
)
from benchmarks.seer_arm import replay_seer
from optuna_seer.backends.replay import RecordedCurve
from optuna_seer.integration.keys import TRIAL_TIE_BREAK
from optuna_seer.integration.ranking import best_finalist, selection_key
from optuna_seer.integration.tie_break import TieBreak, record_tie_break, tie_break_key
from optuna_seer.worker.context import TrialContext

MAX = StudyDirection.MAXIMIZE


def test_a_tie_break_names_its_metric_and_a_valid_mode() -> None:
    with pytest.raises(ValueError, match=r"name='' must name a metric, e.g. 'val_loss'"):
        TieBreak("", 0.1)
    with pytest.raises(ValueError, match=r"mode='minimize' must be 'min' .* or 'max'"):
        TieBreak("val_loss", 0.1, "minimize")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"value='0.1' must be a number or None"):
        TieBreak("val_loss", "0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"value=True must be a number or None"):
        TieBreak("val_loss", True)


def _finalist(
    study: optuna.Study, values: dict[int, float], tie: TieBreak | None = None
) -> FrozenTrial:
    trial = study.ask()
    for step, value in values.items():
        trial.report(value, step)
        if tie is not None:
            record_tie_break(study._storage, trial._trial_id, step, tie)
    return study._storage.get_trial(trial._trial_id)


def test_the_key_is_the_value_at_the_ranked_step_signed_by_mode_and_inf_otherwise() -> None:
    study = optuna.create_study(direction="maximize")
    loss = _finalist(study, {3: 0.9}, TieBreak("val_loss", 0.25))
    assert loss.system_attrs[TRIAL_TIE_BREAK] == {
        "name": "val_loss",
        "mode": "min",
        "step": 3,
        "value": 0.25,
    }
    assert tie_break_key(loss, 3) == 0.25
    assert tie_break_key(loss, 4) == math.inf  # a value of another step is not compared
    assert tie_break_key(_finalist(study, {3: 0.9}, TieBreak("f1", 0.7, "max")), 3) == -0.7
    assert tie_break_key(_finalist(study, {3: 0.9}), 3) == math.inf  # none reported
    for diverged in (None, math.nan, math.inf):
        trial = _finalist(study, {3: 0.9}, TieBreak("val_loss", diverged))
        assert trial.system_attrs[TRIAL_TIE_BREAK]["value"] is None  # JSON-safe in any storage
        assert tie_break_key(trial, 3) == math.inf


def test_finalists_tied_on_the_monitored_metric_are_separated_by_the_tie_break() -> None:
    study = optuna.create_study(direction="maximize")
    flat = {4: 1.0, 6: 1.0, 9: 1.0}
    first = _finalist(study, flat, TieBreak("val_loss", 0.30))
    second = _finalist(study, flat, TieBreak("val_loss", 0.05))
    silent = _finalist(study, flat)
    diverged = _finalist(study, flat, TieBreak("val_loss", math.inf))
    # Optuna's best_trial (and SEER without a tie-break) would take the first of the tie.
    assert best_finalist([first, second, silent, diverged], 4, 9, MAX) is second
    assert selection_key(second, 4, 9, MAX) == (-1.0, -1.0, 0.05, second.number)
    # Only ties: a higher mean over the last rung wins whatever its loss.
    better = _finalist(study, {4: 1.0, 6: 1.0, 9: 1.0, 8: 1.0, 5: 1.0, 7: 0.99}, None)
    assert best_finalist([second, better], 6, 9, MAX) is second  # its mean 1.0 > 0.997
    steadier = _finalist(study, {4: 0.5, 6: 1.0, 9: 1.0}, TieBreak("val_loss", 0.9))
    worse_mean = _finalist(study, {4: 0.5, 6: 0.9, 9: 1.0}, TieBreak("val_loss", 0.01))
    assert best_finalist([worse_mean, steadier], 4, 9, MAX) is steadier
    # A one-rung plan ranks the last value first, then the mean, then the tie-break.
    assert best_finalist([first, second], 0, 9, MAX) is second


def _context(storage: str, study_name: str, rank: int = 0) -> TrialContext:
    return TrialContext(
        study_name=study_name,
        storage=storage,
        trial_number=0,
        rung=0,
        target_epochs=3,
        checkpoint_uri="unused",
        resume_checkpoint=None,
        rank=rank,
    )


def test_a_worker_keeps_the_tie_break_of_the_first_report_of_each_epoch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tie.db'}"
    study = optuna.create_study(storage=url, study_name="tie", direction="maximize")
    study.ask()
    ctx = _context(url, "tie")
    ctx.report(1, 0.8, tie_break=TieBreak("val_loss", 0.6))
    ctx.report(2, 0.9, tie_break=TieBreak("val_loss", 0.4))
    # A retried launch re-trains epoch 2 from an epoch-1 checkpoint: both values stay first.
    ctx.report(2, 0.95, tie_break=TieBreak("val_loss", 0.1))
    _context(url, "tie", rank=1).report(3, 0.99, tie_break=TieBreak("val_loss", 0.0))
    trial = study.trials[0]
    assert trial.intermediate_values == {1: 0.8, 2: 0.9}  # rank 1 writes nothing
    assert trial.system_attrs[TRIAL_TIE_BREAK]["step"] == 2
    assert trial.system_attrs[TRIAL_TIE_BREAK]["value"] == 0.4
    ctx.report(3, 0.9)  # without a tie-break the previous one stays, at its own step
    assert tie_break_key(study.trials[0], 3) == math.inf


EPOCHS = 9


def _tied_with_losses(n: int) -> recorded.CurveSet:
    """Every configuration reports 0.9 validation accuracy at every epoch; configuration ``i``
    has its own validation loss, and a test accuracy that is higher where the loss is lower."""
    losses = [0.1 + ((7 * i) % n) / n for i in range(n)]
    return recorded.CurveSet(
        dataset="ties",
        configs=tuple({"config_id": i} for i in range(n)),
        curves=tuple(
            RecordedCurve(
                val_acc=(0.9,) * EPOCHS,
                test_acc=(1.0 - loss / 2,) * EPOCHS,
                val_loss=(loss,) * EPOCHS,
            )
            for loss in losses
        ),
        epoch_seconds=tuple(0.01 for _ in range(n)),
    )


def test_the_elastic_tuner_on_replay_picks_the_tied_finalist_with_the_lowest_loss() -> None:
    n = 18
    curve_set = _tied_with_losses(n)
    scenario = Scenario("ties", deadline_s=1800.0, dollars=6.0, scaling="babi")
    study, result, _ = replay_seer(scenario, curve_set, seed=0)
    finalists = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(finalists) > 1
    losses = {t.number: t.system_attrs[TRIAL_TIE_BREAK]["value"] for t in finalists}
    assert all(t.system_attrs[TRIAL_TIE_BREAK]["step"] == EPOCHS for t in finalists)
    best = min(losses, key=lambda number: losses[number])
    assert result.best_trial is not None and result.best_trial.number == best
    assert best != min(losses)  # not the first of the tie, as study.best_trial would pick

    # The static plan runs the same rung machinery and ranks its finalists the same way.
    plan = result.plan
    static = run_plan("static-plan", plan, scenario, curve_set, seed=0)
    started = config_order(n, 0)[: plan.n_configs]
    assert static.test_acc is not None and static.config_id in started


def test_seer_callback_checks_its_tie_break_on_construction(tmp_path: Path) -> None:
    from optuna_seer.worker.lightning import SeerCallback

    ctx = _context(f"sqlite:///{tmp_path / 'unused.db'}", "unused")
    with pytest.raises(ValueError, match=r"tie_break='val_acc' is the monitored metric"):
        SeerCallback(ctx, monitor="val_acc", tie_break="val_acc")
    with pytest.raises(ValueError, match=r"mode='lower' must be 'min'"):
        SeerCallback(ctx, monitor="val_acc", tie_break="val_loss", tie_break_mode="lower")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"name='' must name a metric"):
        SeerCallback(ctx, monitor="val_acc", tie_break="")


def _fit(ctx: TrialContext, tie_break: str) -> None:
    """Two epochs of a real (single-process) Lightning fit with SeerCallback."""
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from optuna_seer.worker.lightning import SeerCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 2)

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            logits = self.net(batch[0])
            self.log("val_acc", (logits.argmax(dim=1) == batch[1]).float().mean())
            self.log("val_loss", nn.functional.cross_entropy(logits, batch[1]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    trainer = pl.Trainer(
        max_epochs=ctx.target_epochs,
        callbacks=[SeerCallback(ctx, monitor="val_acc", tie_break=tie_break)],
        **ctx.lightning_trainer_kwargs(),
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=32))


def test_seer_callback_reports_the_tie_break_metric_with_the_monitored_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tie.db'}"
    study = optuna.create_study(storage=url, study_name="tie", direction="maximize")
    study.ask()
    ctx = TrialContext(
        study_name="tie",
        storage=url,
        trial_number=0,
        rung=0,
        target_epochs=2,
        checkpoint_uri=str(tmp_path / "ckpt"),
        resume_checkpoint=None,
    )
    _fit(ctx, "val_loss")
    trial = study.trials[0]
    assert sorted(trial.intermediate_values) == [1, 2]
    record = trial.system_attrs[TRIAL_TIE_BREAK]
    assert record["name"] == "val_loss" and record["mode"] == "min" and record["step"] == 2
    assert math.isfinite(record["value"]) and record["value"] > 0
    # A tie-break metric the module does not log is named, with the ones it does.
    study.ask()
    with pytest.raises(RuntimeError, match=r"'val_f1' was not logged.*\['val_acc', 'val_loss'\]"):
        _fit(replace(ctx, trial_number=1), "val_f1")


def test_the_baselines_ablation_breaks_ties_by_the_loss_only_when_asked() -> None:
    n = 18
    curve_set = _tied_with_losses(n)
    scenario = Scenario("ties", deadline_s=1800.0, dollars=6.0, scaling="babi")
    order = config_order(n, 0)
    plain = run_optuna_pruner("no-pruning", scenario, curve_set, seed=0)
    ablated = run_optuna_pruner("no-pruning", scenario, curve_set, seed=0, tie_break=True)
    assert plain.configs_tried == ablated.configs_tried > 1
    tried = order[: plain.configs_tried]
    loss = {c: curve_set.curves[c].val_loss[-1] for c in tried}  # type: ignore[index]
    assert plain.config_id == order[0]  # study.best_trial's rule: the first of the tie
    assert ablated.config_id == min(tried, key=lambda c: loss[c])
    assert ablated.test_acc is not None and plain.test_acc is not None
    assert ablated.test_acc > plain.test_acc
