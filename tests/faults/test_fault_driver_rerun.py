"""Running the same driver again on a started study (ReplayBackend: cheap; the real-process
version is test_fault_driver_killed.py): a finished study is not run twice, a study started
with another plan is refused, and ``resume=True/False`` insist on a started/new study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from replay_study import (
    EPOCH_SECONDS,
    STARTUP_SECONDS,
    assert_consistent_steps,
    curves,
    plan,
    run_replay,
)

from optuna_seer.backends.replay import EpochObserver, ReplayBackend
from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import ElasticTuner, StudyMismatchError, TuningResult
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler


def _backend(storage: optuna.storages.BaseStorage) -> ReplayBackend:
    return ReplayBackend(
        curves(), "linear", EPOCH_SECONDS, slots=4, startup_seconds=STARTUP_SECONDS,
        storage=storage,
    )  # fmt: skip


def _tuner(study: optuna.Study, backend: object, tmp_path: Path, **kwargs: object) -> ElasticTuner:
    options: dict[str, object] = {
        "backend": backend,
        "train": "benchmarks.seer_arm:replayed_training",
        "checkpoints": tmp_path / "ckpt",
        "search_space": lambda trial: trial.suggest_int("config_id", 0, 7),
        "storage_url": "replay:in-memory",
        "poll_seconds": 5.0,
        "progress": False,
    }
    options.update(kwargs)
    return ElasticTuner(study, **options)  # type: ignore[arg-type]


def _again(
    run_study: optuna.Study, backend: object, tmp_path: Path, **kwargs: object
) -> TuningResult:
    """A new driver on the same study and storage (the pruner may carry another plan), on
    the backend's simulated clock as the first one."""
    the_plan = kwargs.pop("the_plan", plan())
    clock = backend.now  # type: ignore[attr-defined]
    study = optuna.load_study(
        study_name=run_study.study_name,
        storage=run_study._storage,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=clock),
        pruner=SeerPruner(plan=the_plan, clock=clock),  # type: ignore[arg-type]
    )
    return _tuner(study, backend, tmp_path, **kwargs).run()


def test_a_finished_study_is_not_run_again_its_stored_result_comes_back(tmp_path: Path) -> None:
    run = run_replay(tmp_path)
    first = run.result
    trained = run.backend.gpu_seconds
    again = _again(run.study, run.backend, tmp_path)
    assert again.reloaded and not first.reloaded
    assert again.best_trial is not None and first.best_trial is not None
    assert again.best_trial.number == first.best_trial.number
    order = lambda r: (r.started_at, r.trial_number, r.rung)  # noqa: E731
    assert sorted(again.launches, key=order) == sorted(first.launches, key=order)
    assert [r.planned for r in again.rungs] == [r.planned for r in first.rungs]
    assert [r.promoted for r in again.rungs] == [r.promoted for r in first.rungs]
    assert again.ledger.gpu_seconds == pytest.approx(first.ledger.gpu_seconds)
    assert again.wall_seconds == pytest.approx(first.wall_seconds)
    assert "already finished" in again.notes[-1] and "nothing was run" in again.notes[-1]
    assert len(run.study.trials) == len(first.trial_states)  # no trial was added
    assert run.backend.gpu_seconds == trained  # the backend launched nothing
    report = format_report(again)
    assert f"best: trial {first.best_trial.number}" in report
    with pytest.raises(ValueError, match="resume=False wants a new study"):
        _again(run.study, run.backend, tmp_path, resume=False)


def test_a_study_started_with_another_plan_is_refused_naming_both_values(tmp_path: Path) -> None:
    run = run_replay(tmp_path)
    other = plan(deadline_s=7200.0, budget=9.0)
    with pytest.raises(StudyMismatchError) as caught:
        _again(run.study, run.backend, tmp_path, the_plan=other)
    message = str(caught.value)
    assert "deadline 3600 s (stored) vs 7200 s (now)" in message
    assert "budget $5 (stored) vs $9 (now)" in message
    assert "another name" in message


def test_resume_true_needs_a_started_study_and_resume_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to continue"):
        run_replay(tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"resume='maybe' must be 'auto'"):
        run_replay(tmp_path, resume="maybe")


def test_a_driver_killed_while_sampling_is_resumed_with_every_configuration(
    tmp_path: Path,
) -> None:
    # What a driver SIGKILLed after asking 3 of the plan's 8 configurations leaves in the
    # storage: its progress (saved before sampling) and 3 placed trials, one of them without
    # its parameters yet.
    storage = optuna.storages.InMemoryStorage()
    backend = _backend(storage)
    study = optuna.create_study(
        storage=storage,
        study_name="killed-while-sampling",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=backend.now),
        pruner=SeerPruner(plan=plan(), clock=backend.now),
    )
    tuner = _tuner(study, backend, tmp_path)
    tuner._save_progress(0, plan().rungs, [], sampled=False)
    for number in range(3):
        trial = study.ask()
        if number < 2:
            trial.suggest_int("config_id", 0, 7)
    result = _tuner(study, backend, tmp_path).run()
    assert "resumed study 'killed-while-sampling' at rung 0" in result.notes[0]
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == plan().n_configs
    assert all("config_id" in t.params for t in trials)
    assert result.best_trial is not None
    assert_consistent_steps(study)


class DriverBug(RuntimeError):
    pass


def test_a_study_stopped_by_a_driver_error_is_not_continued(tmp_path: Path) -> None:
    def factory(backend: ReplayBackend) -> EpochObserver:
        def observe(handle: str, epoch: int, value: float) -> None:
            if backend.launch_spec(handle).rung == 1:
                raise DriverBug("a bug in the driver")

        return observe

    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(DriverBug):
        run_replay(tmp_path, observer=factory, storage=storage)
    study = optuna.load_study(study_name="faults-0", storage=storage)
    assert {t.state.name for t in study.trials} <= {"FAIL", "PRUNED"}
    with pytest.raises(StudyMismatchError, match="stopped by DriverBug in rung 1"):
        _again(study, _backend(storage), tmp_path)


def test_ctrl_c_pauses_and_the_same_command_continues_the_study(tmp_path: Path) -> None:
    """Ctrl-C in the driver mid-rung stops the launches and leaves the trials in play; the
    same command then resumes at that rung, charging the stopped launches up to the Ctrl-C."""
    seen: dict[str, object] = {}

    def factory(backend: ReplayBackend) -> EpochObserver:
        seen["backend"] = backend

        def observe(handle: str, epoch: int, value: float) -> None:
            if backend.launch_spec(handle).rung == 1 and "paused_at" not in seen:
                seen["paused_at"] = backend.now()
                raise KeyboardInterrupt  # what Ctrl-C raises in the driver's main thread

        return observe

    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(KeyboardInterrupt):
        run_replay(tmp_path, observer=factory, storage=storage)
    study = optuna.load_study(study_name="faults-0", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["PRUNED"] * 4 + ["RUNNING"] * 4  # nothing FAILed: rung 1 is in play
    backend = seen["backend"]
    assert isinstance(backend, ReplayBackend)
    result = _again(study, backend, tmp_path)  # the same machine, the same command
    (resumed,) = [note for note in result.notes if note.startswith("resumed study")]
    assert "resumed study 'faults-0' at rung 1" in resumed
    assert "up to the Ctrl-C that paused the driver" in resumed
    assert sum(1 for r in result.launches if r.rung == 0) == 8  # rung 0 is not run again
    assert result.best_trial is not None and not result.reloaded
    assert sorted(result.trial_states.values()).count("COMPLETE") == 2, result.notes
    # Every second the backend ran a launch is charged once: the stopped ones to the Ctrl-C.
    assert result.ledger.gpu_seconds == pytest.approx(backend.gpu_seconds)
    assert_consistent_steps(study)
