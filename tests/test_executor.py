"""ElasticTuner on real Lightning DDP trials, and its early refusals of bad set-ups."""

from __future__ import annotations

import math
from pathlib import Path

from elastic_support import DIGITS_TRAIN, REPO, worker_env
import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer.backends.local import LocalBackend
from optuna_seer.cli.plots import plot_timeline
from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload
from optuna_seer.worker.checkpoints import open_store

PRICE = 3.0 / 3600


def _plan(shapes: list[RungShape], slots: int = 2, deadline_s: float = 900.0) -> Plan:
    workload = Workload(
        epoch_seconds=1.0, scaling="amdahl:0.8", max_epochs=shapes[-1].resource, startup_seconds=15
    )
    rungs = schedule(shapes, workload, PRICE, ClusterLimits(max_gpus=slots))
    return Plan(
        rungs=rungs,
        reduction_factor=2,
        deadline_s=deadline_s,
        budget_dollars=1.0,
        price_per_gpu_second=PRICE,
        min_marginal_speedup=0.2,
    )


def _study(url: str | None, plan: Plan, name: str = "elastic") -> optuna.Study:
    return optuna.create_study(
        storage=url,
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=plan),
    )


def _search_space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-3, 3e-1, log=True)
    trial.suggest_int("hidden", 16, 64, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_rungs_prune_by_reported_values_and_resize_one_to_two(tmp_path: Path) -> None:
    plan = _plan([RungShape(3, 1, 1), RungShape(2, 2, 1), RungShape(1, 3, 2)])
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    study = _study(url, plan)
    tuner = ElasticTuner(
        study,
        plan=plan,
        backend=LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env=worker_env()),
        train=DIGITS_TRAIN,
        search_space=_search_space,
        checkpoints=tmp_path / "ckpt",
        drift_tolerance=math.inf,  # keep the planned resize: the deadline is generous
        progress=False,
    )
    result = tuner.run()

    trials = {t.number: t for t in optuna.load_study(study_name="elastic", storage=url).trials}
    assert {t.state for t in trials.values()} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert [t.state for t in trials.values()].count(TrialState.COMPLETE) == 1
    # Each rung kept the best reported values at its end, and every trial's intermediate
    # values stop exactly where it was eliminated.
    alive = set(trials)
    for record in result.rungs[:-1]:
        step = record.planned.resource
        kept = [trials[n].intermediate_values[step] for n in record.promoted]
        dropped = [trials[n].intermediate_values[step] for n in record.eliminated]
        assert len(kept) == plan.rungs[record.planned.index + 1].n_trials
        assert set(record.promoted) | set(record.eliminated) == alive
        assert min(kept) >= max(dropped)
        for number in record.eliminated:
            assert trials[number].state == TrialState.PRUNED
            assert sorted(trials[number].intermediate_values) == list(range(1, step + 1))
            assert trials[number].value == trials[number].intermediate_values[step]
        alive = set(record.promoted)
    (finalist,) = alive
    best = trials[finalist]
    assert best.state == TrialState.COMPLETE
    assert sorted(best.intermediate_values) == [1, 2, 3]
    assert best.value == best.intermediate_values[3] == result.best_value
    # The finalist was resized: one worker in rungs 0-1, then a 2-process DDP run.
    workers = [(r.rung, r.workers, r.lanes) for r in result.launches if r.trial_number == finalist]
    assert workers == [(0, 1, workers[0][2]), (1, 1, workers[1][2]), (2, 2, (0, 1))]
    assert open_store(str(tmp_path / "ckpt" / "elastic" / f"trial-{finalist}")).names() == [
        "rung-0.ckpt",
        "rung-1.ckpt",
        "rung-2.ckpt",
    ]
    # Ledger: measured worker-seconds of every launch (plus the milliseconds between closing
    # an account and Optuna's tell, which SeerSampler settles), priced per slot-second.
    charged = sum(r.wall_seconds * r.workers for r in result.launches)
    assert result.ledger.gpu_seconds == pytest.approx(charged, rel=0.01)
    assert all(r.overhead_seconds is not None for r in result.launches)
    report = format_report(result)
    assert "overhead per launch" in report and f"best: trial {finalist}" in report
    assert plot_timeline(result, tmp_path / "timeline.png").stat().st_size > 0


def test_refuses_a_study_without_the_seer_pair(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ValueError, match="sampler=SeerSampler"):
        ElasticTuner(study, backend=LocalBackend(1), train=DIGITS_TRAIN, checkpoints=tmp_path)


def test_refuses_in_memory_storage(tmp_path: Path) -> None:
    plan = _plan([RungShape(2, 1, 1), RungShape(1, 2, 1)])
    with pytest.raises(ValueError, match="cannot be shared with worker processes"):
        ElasticTuner(
            _study(None, plan),
            backend=LocalBackend(1),
            train=DIGITS_TRAIN,
            checkpoints=tmp_path,
        )


def test_refuses_plans_wider_than_the_backend(tmp_path: Path) -> None:
    plan = _plan([RungShape(2, 1, 1), RungShape(1, 2, 2)])
    study = _study(f"sqlite:///{tmp_path / 'b.db'}", plan)
    with pytest.raises(ValueError, match="2 workers but the backend has 1 slots"):
        ElasticTuner(study, backend=LocalBackend(1), train=DIGITS_TRAIN, checkpoints=tmp_path)
    other = _plan([RungShape(3, 1, 1), RungShape(1, 2, 1)])
    with pytest.raises(ValueError, match=r"plan= differs from study\.pruner\.plan"):
        # One slot: every machine has it (GPU or CPU), and the plan is checked first.
        ElasticTuner(
            study, plan=other, backend=LocalBackend(1), train=DIGITS_TRAIN, checkpoints=tmp_path
        )


def test_refuses_a_used_study_and_finds_the_search_space(tmp_path: Path) -> None:
    plan = _plan([RungShape(2, 1, 1), RungShape(1, 2, 1)])
    study = _study(f"sqlite:///{tmp_path / 'c.db'}", plan)
    tuner = ElasticTuner(
        study,
        backend=LocalBackend(1),
        train=str(REPO / "examples" / "lightning_digits.py") + ":train",
        checkpoints=tmp_path / "ckpt",
        progress=False,
    )
    study.ask()
    with pytest.raises(ValueError, match="already has trials"):
        tuner.run()
    with pytest.raises(ValueError, match="no such file"):
        ElasticTuner(study, backend=LocalBackend(1), train="nope.py", checkpoints=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_finalist_that_cannot_finish_is_stopped_before_the_deadline(tmp_path: Path) -> None:
    # The plan believes 100000 epochs take under a minute (0.5 ms each); no machine trains a
    # Lightning epoch that fast, so after rung 0 the executor re-plans, finds that even one
    # finalist cannot finish, and the finalist is asked to stop (after an epoch, with a
    # checkpoint) before the deadline. (With 1000 epochs a fast, idle machine finished them.)
    shapes = [RungShape(2, 1, 1), RungShape(1, 100_000, 1)]
    workload = Workload(
        epoch_seconds=0.0005, scaling="linear", max_epochs=100_000, startup_seconds=8
    )
    rungs = schedule(shapes, workload, PRICE, ClusterLimits(max_gpus=2))
    plan = Plan(
        rungs=rungs,
        reduction_factor=2,
        deadline_s=120.0,
        budget_dollars=100.0,  # the deadline, not the budget, is what stops it
        price_per_gpu_second=PRICE,
        min_marginal_speedup=0.2,
    )
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    study = _study(url, plan, name="deadline")
    result = ElasticTuner(
        study,
        backend=LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env=worker_env()),
        train=DIGITS_TRAIN,
        search_space=_search_space,
        checkpoints=tmp_path / "ckpt",
        progress=False,
    ).run()
    # Which guard acts depends on how slow this machine is right now: the re-plan after rung 0
    # ("cannot finish": stop early) or the deadline itself ("deadline reached"); both stop
    # the finalist before the deadline with a checkpoint, which is what is checked below.
    assert any("cannot finish" in note or "deadline reached" in note for note in result.notes), (
        result.notes
    )
    trials = optuna.load_study(study_name="deadline", storage=url).trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    (finalist,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert finalist.system_attrs["seer:stop_reason"].startswith("deadline:"), result.notes
    assert 1 <= finalist.last_step < 100_000  # type: ignore[operator]
    assert finalist.value == finalist.intermediate_values[finalist.last_step]  # type: ignore[index]
    assert result.best_trial is not None and result.best_trial.number == finalist.number
