"""ReplayBackend: the Backend contract on a simulated clock, deterministic given its seed."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.integration.keys import TRIAL_STOP_REASON, launch_timing_key

CURVES = [
    RecordedCurve(val_acc=(0.1, 0.2, 0.3, 0.4), test_acc=(0.15, 0.25, 0.35, 0.45)),
    RecordedCurve(val_acc=(0.5, 0.6, 0.7, 0.8), test_acc=(0.55, 0.65, 0.75, 0.85)),
]


def _study(storage: optuna.storages.BaseStorage | str | None = None) -> optuna.Study:
    return optuna.create_study(storage=storage, direction="maximize")


def _trial(study: optuna.Study, config: int) -> optuna.Trial:
    study.enqueue_trial({"config_id": config})
    trial = study.ask()
    trial.suggest_int("config_id", 0, len(CURVES) - 1)
    return trial


def _spec(
    study: optuna.Study,
    trial: optuna.Trial,
    target: int,
    workers: int = 1,
    resume: bool = False,
    rung: int = 0,
) -> LaunchSpec:
    return LaunchSpec(
        study_name=study.study_name,
        storage="unused",
        trial_number=trial.number,
        params=trial.params,
        rung=rung,
        target_epochs=target,
        workers=workers,
        checkpoint_uri="replay://x",
        resume_from="replay://x/ckpt" if resume else None,
    )


def _backend(study: optuna.Study, **kwargs: object) -> ReplayBackend:
    options: dict[str, object] = {"slots": 4, "storage": study._storage}
    options.update(kwargs)
    return ReplayBackend(CURVES, "linear", 60.0, **options)  # type: ignore[arg-type]


def test_is_a_backend_and_reports_recorded_values_on_simulated_time() -> None:
    study = _study()
    backend = _backend(study, startup_seconds=10.0)
    assert isinstance(backend, Backend)
    assert backend.slots == 4 and backend.now() == 0.0
    trial = _trial(study, 1)
    handle = backend.start(_spec(study, trial, target=3, workers=2))
    assert backend.poll(handle).state is LaunchState.RUNNING
    assert backend.wait([handle], timeout_s=math.inf) == [handle]
    # 10 s start-up + 3 epochs of 60 s on 2 workers with linear scaling.
    assert backend.now() == pytest.approx(10.0 + 3 * 30.0)
    status = backend.poll(handle)
    assert status.state is LaunchState.SUCCEEDED and status.done
    assert status.started_at == 0.0 and status.finished_at == pytest.approx(100.0)
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7}
    assert backend.epochs_trained(study.study_name, trial.number) == 3
    assert backend.test_accuracy(study.study_name, trial.number) == 0.75
    assert backend.validation_accuracy(study.study_name, trial.number) == 0.7
    assert backend.gpu_seconds == pytest.approx(2 * 100.0)


def test_wait_with_timeout_advances_the_clock_exactly_and_reports_epochs_so_far() -> None:
    study = _study()
    backend = _backend(study)
    trial = _trial(study, 0)
    handle = backend.start(_spec(study, trial, target=4))
    assert backend.wait([handle], timeout_s=150.0) == []
    assert backend.now() == 150.0
    assert study.trials[0].intermediate_values == {1: 0.1, 2: 0.2}
    assert backend.gpu_seconds == pytest.approx(150.0)


def test_resume_continues_from_the_checkpoint_and_fresh_start_retrains() -> None:
    study = _study()
    backend = _backend(study)
    trial = _trial(study, 0)
    first = backend.start(_spec(study, trial, target=2))
    backend.wait([first], math.inf)
    second = backend.start(_spec(study, trial, target=4, resume=True, rung=1))
    backend.wait([second], math.inf)
    assert backend.now() == pytest.approx(4 * 60.0)
    fresh = backend.start(_spec(study, trial, target=1))
    backend.wait([fresh], math.inf)
    assert backend.now() == pytest.approx(5 * 60.0)
    assert backend.epochs_trained(study.study_name, trial.number) == 1


def test_launches_queue_for_slots_and_stop_keeps_completed_epochs() -> None:
    study = _study()
    backend = _backend(study, slots=2)
    a, b = _trial(study, 0), _trial(study, 1)
    first = backend.start(_spec(study, a, target=4, workers=2))
    queued = backend.start(_spec(study, b, target=1, workers=2))
    assert backend.wait([queued], timeout_s=75.0) == []
    assert backend.epochs_trained(study.study_name, b.number) == 0
    backend.stop(first)
    assert backend.poll(first).state is LaunchState.STOPPED
    assert backend.epochs_trained(study.study_name, a.number) == 2  # 2 epochs of 30 s by 75 s
    assert backend.wait([queued], math.inf) == [queued]
    assert backend.now() == pytest.approx(75.0 + 30.0)
    assert backend.gpu_seconds == pytest.approx(2 * 75.0 + 2 * 30.0)
    backend.stop(first)  # idempotent
    backend.release()


def test_straggler_noise_is_deterministic_given_the_seed() -> None:
    def run(seed: int) -> tuple[float, dict[int, float]]:
        study = _study()
        backend = _backend(study, straggler_cv=0.3, seed=seed)
        handles = [backend.start(_spec(study, _trial(study, i % 2), target=4)) for i in range(3)]
        finished = []
        pending = set(handles)
        while pending:
            done = backend.wait(sorted(pending), math.inf)
            finished.append(backend.now())
            pending -= set(done)
        return finished[-1], {t.number: t.intermediate_values[4] for t in study.trials}

    assert run(7) == run(7)
    assert run(7)[0] != run(8)[0]
    assert run(7)[0] != pytest.approx(4 * 60.0)


def test_observer_sees_each_epoch_and_may_stop_the_launch() -> None:
    study = _study()
    seen: list[tuple[int, float]] = []
    box: list[ReplayBackend] = []

    def observer(handle: str, epoch: int, value: float) -> None:
        seen.append((epoch, value))
        if epoch == 2:
            box[0].stop(handle)

    backend = _backend(study, observer=observer)
    box.append(backend)
    handle = backend.start(_spec(study, _trial(study, 1), target=4))
    assert backend.wait([handle], math.inf) == [handle]
    assert seen == [(1, 0.5), (2, 0.6)]
    assert backend.poll(handle).state is LaunchState.STOPPED
    assert backend.now() == pytest.approx(120.0)


def test_reports_through_the_storage_named_in_the_spec(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _study(url)
    backend = ReplayBackend(CURVES, "resnet50", 60.0, slots=2)
    trial = _trial(study, 0)
    spec = _spec(study, trial, target=2, workers=2)
    handle = backend.start(LaunchSpec(**{**spec.__dict__, "storage": url}))
    backend.wait([handle], math.inf)
    assert backend.now() == pytest.approx(2 * 60.0 / 1.870)
    assert optuna.load_study(study_name=study.study_name, storage=url).trials[
        0
    ].intermediate_values == {
        1: 0.1,
        2: 0.2,
    }


def test_a_finished_trial_makes_the_launch_fail_like_a_worker_would() -> None:
    study = _study()
    backend = _backend(study)
    trial = _trial(study, 0)
    handle = backend.start(_spec(study, trial, target=2))
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert backend.wait([handle], math.inf) == [handle]
    status = backend.poll(handle)
    assert status.state is LaunchState.FAILED and "could not report" in status.message


def test_bad_input_is_refused_early_with_the_valid_range() -> None:
    study = _study()
    backend = _backend(study, slots=2)
    trial = _trial(study, 0)
    with pytest.raises(ValueError, match="3 workers but this replay has 2 slots"):
        backend.start(_spec(study, trial, target=1, workers=3))
    with pytest.raises(ValueError, match="recorded for 4 epochs"):
        backend.start(_spec(study, trial, target=5))
    bad = LaunchSpec(**{**_spec(study, trial, target=1).__dict__, "params": {"config_id": 9}})
    with pytest.raises(ValueError, match=r"valid: 0\.\.1"):
        backend.start(bad)
    backend.start(_spec(study, trial, target=1))
    with pytest.raises(ValueError, match="already has a running launch"):
        backend.start(_spec(study, trial, target=1))
    with pytest.raises(ValueError, match="unknown launch handle"):
        backend.poll("nope")
    with pytest.raises(ValueError, match="slots"):
        ReplayBackend(CURVES, "linear", 60.0, slots=0)
    with pytest.raises(ValueError, match="straggler_cv"):
        ReplayBackend(CURVES, "linear", 60.0, slots=1, straggler_cv=-1.0)
    with pytest.raises(ValueError, match="not known"):
        ReplayBackend(CURVES, "warp-drive", 60.0, slots=1)
    with pytest.raises(ValueError, match="as many validation as test"):
        RecordedCurve(val_acc=(0.1,), test_acc=())


def test_waiting_forever_on_nothing_is_an_error_not_a_hang() -> None:
    study = _study()
    backend = _backend(study)
    handle = backend.start(_spec(study, _trial(study, 0), target=1))
    backend.stop(handle)
    assert backend.wait([handle], math.inf) == [handle]
    assert backend.now() == 0.0
    with pytest.raises(RuntimeError, match="nothing is running"):
        backend.wait([], math.inf)
    with pytest.raises(ValueError, match="timeout_s"):
        backend.wait([handle], -1.0)


def test_a_trial_asked_to_stop_ends_after_its_current_epoch_like_a_worker() -> None:
    study = _study()
    backend = _backend(study)
    trial = _trial(study, 1)
    handle = backend.start(_spec(study, trial, target=4))
    assert backend.wait([handle], timeout_s=90.0) == []
    study._storage.set_trial_system_attr(trial._trial_id, TRIAL_STOP_REASON, "deadline")
    assert backend.wait([handle], math.inf) == [handle]
    status = backend.poll(handle)
    assert status.state is LaunchState.SUCCEEDED and "after epoch 2" in status.message
    assert backend.now() == pytest.approx(120.0)
    assert backend.epochs_trained(study.study_name, trial.number) == 2


def test_replays_into_every_storage_kind(storage: object) -> None:
    study = optuna.create_study(storage=storage, direction="maximize")  # type: ignore[arg-type]
    backend = ReplayBackend(CURVES, "babi", 60.0, slots=8, storage=study._storage)
    handles = [backend.start(_spec(study, _trial(study, i), target=4, workers=4)) for i in (0, 1)]
    pending = set(handles)
    while pending:
        pending -= set(backend.wait(sorted(pending), math.inf))
    assert backend.now() == pytest.approx(4 * 60.0 / 2.027)
    assert [t.intermediate_values[4] for t in study.get_trials()] == [0.4, 0.8]


def test_a_successful_launch_records_its_training_like_a_worker() -> None:
    study = _study()
    backend = _backend(study, startup_seconds=10.0)
    trial = _trial(study, 0)
    first = backend.start(_spec(study, trial, target=1))
    backend.wait([first], math.inf)
    second = backend.start(_spec(study, trial, target=3, workers=2, resume=True, rung=1))
    backend.wait([second], math.inf)
    attrs = study.trials[0].system_attrs
    assert attrs[launch_timing_key(0)] == {"train_seconds": 60.0, "epochs": 1}
    assert attrs[launch_timing_key(1)] == {"train_seconds": 60.0, "epochs": 2}
