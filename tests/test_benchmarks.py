"""The benchmark harness: baselines on the replay clock, and ``benchmarks/run.py --quick``."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

import optuna
from optuna.trial import FrozenTrial
import pytest

from benchmarks import curves as recorded
from benchmarks import exhaustive_selection, pool_losses, rung_rules
from benchmarks import run as run_script
from benchmarks.baselines import (
    OPTUNA_PRUNERS,
    Outcome,
    Scenario,
    config_order,
    naive_elastic_plan,
    run_optuna_pruner,
    run_plan,
)
from benchmarks.seer_arm import other_datasets_prior, run_seer
from benchmarks.seer_pool import pool_plan, run_seer_pool
from optuna_seer import plan_seer
from optuna_seer.backends.replay import RecordedCurve
import optuna_seer.integration.ranking as ranking_module
from optuna_seer.integration.ranking import curve_rank_key
from optuna_seer.planning.learning_curves import CurvePrior

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 9


def _curve(final: float, speed: float) -> RecordedCurve:
    """A curve rising towards ``final``; fast learners (high ``speed``) look good early."""
    val = tuple(round(final * (1 - (1 - speed) ** (e + 1)), 4) for e in range(EPOCHS))
    return RecordedCurve(val_acc=val, test_acc=tuple(v - 0.01 for v in val))


@pytest.fixture(scope="module")
def curve_set() -> recorded.CurveSet:
    shapes = [(0.5 + 0.02 * i, 0.2 + 0.03 * (i % 7)) for i in range(24)]
    return recorded.CurveSet(
        dataset="synthetic",
        configs=tuple({"config_id": i} for i in range(len(shapes))),
        curves=tuple(_curve(f, s) for f, s in shapes),
        epoch_seconds=tuple(0.01 for _ in shapes),
    )


SCENARIO = Scenario("test", deadline_s=1800.0, dollars=6.0, scaling="babi", epoch_seconds=60.0)


def setup_module() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_scenario_pool_is_what_the_budget_buys_for_the_whole_deadline() -> None:
    assert SCENARIO.pool_gpus == 4  # $6 / ($3/h × 0.5 h)
    with pytest.raises(ValueError, match="does not buy one GPU"):
        Scenario("poor", deadline_s=3600.0, dollars=1.0, scaling="linear")


def test_config_order_is_a_seeded_permutation() -> None:
    assert config_order(10, 3) == config_order(10, 3)
    assert sorted(config_order(10, 3)) == list(range(10))
    assert config_order(10, 3) != config_order(10, 4)


@pytest.mark.parametrize("method", sorted(OPTUNA_PRUNERS))
def test_optuna_pruners_stay_within_deadline_and_budget(
    method: str, curve_set: recorded.CurveSet
) -> None:
    outcome = run_optuna_pruner(method, SCENARIO, curve_set, seed=1)
    assert outcome.within_deadline and outcome.within_budget
    assert outcome.seconds <= SCENARIO.deadline_s
    assert outcome.test_acc is not None and outcome.config_id is not None
    assert outcome.test_acc == curve_set.curves[outcome.config_id].test_acc[EPOCHS - 1]
    assert run_optuna_pruner(method, SCENARIO, curve_set, seed=1) == outcome


@pytest.mark.parametrize("scaling", ["resnet50", "babi"])
def test_seer_arm_runs_the_elastic_tuner_within_deadline_and_budget(
    scaling: str, curve_set: recorded.CurveSet
) -> None:
    scenario = Scenario("tight", deadline_s=600.0, dollars=6.0, scaling=scaling)
    outcome = run_seer(scenario, curve_set, seed=3)
    assert outcome.within_deadline and outcome.within_budget
    assert outcome.test_acc is not None and outcome.config_id is not None
    assert outcome.test_acc in curve_set.curves[outcome.config_id].test_acc
    assert run_seer(scenario, curve_set, seed=3) == outcome


def test_seer_pair_on_the_pool_stays_within_the_plan_width_deadline_and_budget(
    curve_set: recorded.CurveSet,
) -> None:
    outcome = run_seer_pool(SCENARIO, curve_set, seed=2)
    assert outcome.within_deadline and outcome.within_budget
    assert outcome.test_acc is not None
    assert outcome.configs_tried <= len(curve_set.curves)
    assert run_seer_pool(SCENARIO, curve_set, seed=2) == outcome


def test_static_plan_trains_its_finalists_fully_and_keeps_its_promises(
    curve_set: recorded.CurveSet,
) -> None:
    plan = plan_seer(
        SCENARIO.budget, SCENARIO.workload(EPOCHS), 3, max_configs=len(curve_set.curves)
    )
    outcome = run_plan("static-plan", plan, SCENARIO, curve_set, seed=0)
    assert outcome.configs_tried == plan.n_configs
    assert outcome.config_id in config_order(len(curve_set.curves), 0)[: plan.n_configs]
    assert outcome.test_acc == curve_set.curves[outcome.config_id].test_acc[EPOCHS - 1]
    assert outcome.within_budget


def test_naive_elastic_sha_splits_the_pool_evenly_and_runs_late_on_poor_scaling(
    curve_set: recorded.CurveSet,
) -> None:
    wide = Scenario("wide", deadline_s=3600.0, dollars=48.0, scaling="babi", epoch_seconds=300.0)
    plan = naive_elastic_plan(wide, EPOCHS, max_configs=1000)  # configurations repeat
    for rung in plan.rungs:
        assert rung.gpus_per_trial == max(1, wide.pool_gpus // rung.n_trials)
    assert plan.rungs[-1].gpus_per_trial > 1
    outcome = run_plan(
        "naive-elastic-sha", plan, wide, curve_set, seed=0, billed_gpus=wide.pool_gpus
    )
    # It planned for linear scaling; bAbI's 4 or 8 GPUs give 2.03x or 2.75x.
    assert plan.predicted_seconds <= wide.deadline_s < outcome.seconds
    assert outcome.dollars == pytest.approx(wide.pool_gpus * outcome.seconds * 3.0 / 3600)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_quick_writes_tables_json_and_plot(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| *oracle* |" in done.stdout
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["seeds"] == 2 and len(data["results"]) == 1
    summary = data["results"][0]["summary"]
    assert {"oracle", "static-plan", "optuna-sha", "no-pruning"} <= set(summary)
    assert (tmp_path / "results.png").stat().st_size > 0
    assert (tmp_path / "results.md").read_text().startswith("Command:")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rung_rules_replays_the_decisions_the_static_plan_makes(
    seed: int, curve_set: recorded.CurveSet
) -> None:
    # SeerPruner.decide_rung breaks ties by the rung mean and the static plan's final pick
    # ranks by the last rung's mean first (optuna_seer.integration.ranking): rung_rules' "ties /
    # mean".
    plan = plan_seer(
        SCENARIO.budget, SCENARIO.workload(EPOCHS), 3, max_configs=len(curve_set.curves)
    )
    outcome = run_plan("static-plan", plan, SCENARIO, curve_set, seed=seed)
    assert rung_rules.select(curve_set, plan, seed, "ties", "mean") == outcome.config_id


def test_run_filters_data_sets_scenarios_and_methods(tmp_path: Path) -> None:
    argv = ["--datasets", "wine", "--scenarios", "30m $24 babi", "--seeds", "1"]
    argv += ["--methods", "static-plan", "--no-plot", "--out", str(tmp_path)]
    assert run_script.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["dataset"], r["scenario"]["name"]) for r in results] == [("wine", "30m $24 babi")]
    assert set(results[0]["runs"]) == {"static-plan"}
    with pytest.raises(SystemExit):
        run_script.main(["--scenarios", "1h $5 linear"])


def test_run_what_if_start_up_applies_to_every_arm_and_refuses_a_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--datasets", "wine", "--scenarios", "30m $24 babi", "--seeds", "1", "--no-plot"]
    argv += ["--methods", "static-plan", "optuna-sha", "--startup-seconds", "0"]
    assert run_script.main([*argv, "--out", str(tmp_path)]) == 0
    cell = json.loads((tmp_path / "results.json").read_text())["results"][0]
    assert cell["scenario"]["startup_seconds"] == 0.0
    with pytest.raises(SystemExit):
        run_script.main([*argv[:-2], "--startup-seconds", "-1"])
    assert "--startup-seconds=-1.0 must be a finite number >= 0" in capsys.readouterr().err


def _write_curves(directory: Path, curves: recorded.CurveSet) -> None:
    """``curves`` as ``record_curves.py`` writes them, to ``<directory>/<dataset>.json.gz``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "dataset": curves.dataset,
        "configs": list(curves.configs),
        "curves": [
            {"val_acc": list(c.val_acc), "test_acc": list(c.test_acc), "epoch_seconds": [s]}
            for c, s in zip(curves.curves, curves.epoch_seconds)
        ],
    }
    with gzip.open(directory / f"{curves.dataset}.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(data, handle)


@pytest.fixture()
def curves_dir(tmp_path: Path, curve_set: recorded.CurveSet) -> Path:
    """The fixture's ``synthetic`` set and ``other``: late bloomers, none of its curves."""
    other = recorded.CurveSet(
        dataset="other",
        configs=tuple({"config_id": i} for i in range(6)),
        curves=tuple(_curve(0.9 - 0.05 * i, 0.05 + 0.02 * i) for i in range(6)),
        epoch_seconds=(0.01,) * 6,
    )
    directory = tmp_path / "curves"
    _write_curves(directory, curve_set)
    _write_curves(directory, other)
    return directory


def test_seer_curve_prior_is_the_other_data_sets_only(
    curves_dir: Path, curve_set: recorded.CurveSet
) -> None:
    other = recorded.load("other", curves_dir)
    prior = other_datasets_prior("synthetic", curves_dir)
    assert [tuple(c) for c in prior.curves] == [c.val_acc for c in other.curves]
    assert not {c.val_acc for c in curve_set.curves} & {tuple(c) for c in prior.curves}
    assert prior.optimism == 0.0
    (curves_dir / "other.json.gz").unlink()
    with pytest.raises(ValueError, match="needs another one"):
        other_datasets_prior("synthetic", curves_dir)


def test_seer_curve_arm_promotes_by_the_other_data_sets_prior(
    curves_dir: Path,
    curve_set: recorded.CurveSet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``seer-curve`` is the ``seer`` arm whose pruner ranks rungs by the curve prior built
    from the *other* data sets in the curves directory."""
    priors: list[CurvePrior | None] = []
    ranked: list[int] = []

    def spy_run_seer(*args: Any, **kwargs: Any) -> Outcome:
        if "curve_prior" in kwargs:  # not the plain seer arm run.py also runs
            priors.append(kwargs["curve_prior"])
        return run_seer(*args, **kwargs)

    def spy_curve_rank_key(trial: FrozenTrial, *args: Any) -> Any:
        ranked.append(trial.number)
        return curve_rank_key(trial, *args)

    monkeypatch.setattr(run_script, "run_seer", spy_run_seer)
    monkeypatch.setattr(ranking_module, "curve_rank_key", spy_curve_rank_key)
    scenario = Scenario("tight", deadline_s=600.0, dollars=6.0, scaling="babi")
    method = run_script.seer_curve(curves_dir)
    outcome = method(scenario, curve_set, 3)
    assert outcome.method == "seer-curve"
    assert outcome.within_deadline and outcome.within_budget
    assert outcome.test_acc is not None and outcome.config_id is not None
    assert ranked, "the pruner never ranked a rung by the curve prior"
    other = recorded.load("other", curves_dir)
    assert priors[0] is not None
    assert [tuple(c) for c in priors[0].curves] == [c.val_acc for c in other.curves]
    assert method(scenario, curve_set, 3) == outcome
    assert priors[1] is priors[0]  # built once per data set
    # run.py gives the arm the --curves directory, and reports it as its own method.
    argv = ["--curves", str(curves_dir), "--datasets", "synthetic", "--seeds", "1"]
    argv += ["--scenarios", "30m $24 babi", "--methods", "seer", "seer-curve", "optuna-sha"]
    assert run_script.main([*argv, "--no-plot", "--out", str(tmp_path / "out")]) == 0
    assert priors[2] is not None
    assert [tuple(c) for c in priors[2].curves] == [c.val_acc for c in other.curves]
    result = json.loads((tmp_path / "out" / "results.json").read_text())["results"][0]
    assert [r["method"] for r in result["runs"]["seer-curve"]] == ["seer-curve"]
    assert "seer-curve (gap closed)" in (tmp_path / "out" / "results.md").read_text()


def test_exhaustive_selection_picks_by_validation_and_reports_every_cell(
    curve_set: recorded.CurveSet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Test tracks validation on these curves: selecting by validation finds the oracle.
    full = len(curve_set.curves)
    oracle = curve_set.oracle_test_accuracy(EPOCHS)
    assert exhaustive_selection.exhaustive(curve_set, 5, full, EPOCHS) == pytest.approx(oracle)
    assert exhaustive_selection.exhaustive(curve_set, 5, 4, EPOCHS) < oracle
    with pytest.raises(ValueError, match=r"by='loss' must be 'val_acc' or 'val_loss'"):
        exhaustive_selection.exhaustive(curve_set, 1, full, EPOCHS, by="loss")
    with pytest.raises(ValueError, match=r"width=0 must be at least 1 and epochs=10 within 1..9"):
        exhaustive_selection.exhaustive(curve_set, 1, 0, EPOCHS + 1)

    committed = ROOT / "benchmarks" / "results" / "results.json"
    assert exhaustive_selection.main(["--seeds", "2", "--results", str(committed)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "$24" in line]
    assert len(rows) == len(json.loads(committed.read_text())["results"])

    # A run without the seer-pool arm keeps the columns in place, with a dash.
    results = json.loads(committed.read_text())
    for cell in results["results"]:
        del cell["summary"]["seer-pool"]
    without = tmp_path / "without.json"
    without.write_text(json.dumps(results))
    assert exhaustive_selection.main(["--widths", "--results", str(without)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "$24" in line]
    assert rows and all(row.count("|") == 10 and row.endswith("| - |") for row in rows)


def test_pool_losses_says_what_became_of_seers_pick(curve_set: recorded.CurveSet) -> None:
    scenario = Scenario("small pool", deadline_s=1800.0, dollars=3.0, scaling="babi")
    width = pool_plan(scenario, curve_set).n_configs  # 2 workers: fewer than the 24 curves
    order = config_order(len(curve_set.curves), 0)
    assert width < len(order)

    def cell(seer_pick: int, pool_test: float) -> dict[str, Any]:
        return {
            "dataset": curve_set.dataset,
            "scenario": {**scenario.__dict__, "pool_gpus": scenario.pool_gpus},
            "runs": {
                "seer": [{"seed": 0, "config_id": seer_pick, "test_acc": 0.9}],
                "seer-pool": [{"seed": 0, "config_id": order[0], "test_acc": pool_test}],
            },
        }

    assert pool_losses.losses(cell(order[width], 0.8), curve_set) == {"beyond the pool's width": 1}
    within = pool_losses.losses(cell(order[1], 0.8), curve_set)
    assert sum(within.values()) == 1 and "beyond the pool's width" not in within
    assert pool_losses.losses(cell(order[width], 0.95), curve_set) == {}  # the pool did better
    missing = cell(order[0], 0.8)
    del missing["runs"]["seer"]
    with pytest.raises(ValueError, match=r"the results hold \['seer-pool'\]; this needs both"):
        pool_losses.losses(missing, curve_set)
