"""Profiles: measurements, scaling fits, JSON round trips, and profiling through a Backend."""

from __future__ import annotations

from collections.abc import Sequence
import json
from pathlib import Path
import subprocess
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.planning.profile import (
    Measurement,
    Profile,
    fit_amdahl,
    fit_profile,
    fit_scaling,
    measurements_from_durations,
)
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.workload import TrialTiming
from optuna_seer.profiling.harness import (
    load_profile,
    measure_alone_and_together,
    measure_contention,
    measure_on_backend,
    save_profile,
)


def test_measurement_statistics_and_validation() -> None:
    m = Measurement(2, (1.0, 3.0), (5.0, 7.0))
    assert m.mean_epoch_seconds == 2.0
    assert m.epoch_cv == pytest.approx(2**0.5 / 2)
    assert Measurement(1, (4.0,)).epoch_cv == 0.0
    with pytest.raises(ValueError, match="workers"):
        Measurement(0, (1.0,))
    with pytest.raises(ValueError, match="no epoch times"):
        Measurement(1, ())
    with pytest.raises(ValueError, match="epoch_seconds"):
        Measurement(1, (-1.0,))


@given(st.floats(0.3, 1.0), st.sampled_from([(1, 2), (1, 2, 4), (1, 2, 4, 8)]))
@settings(max_examples=30, deadline=None)
def test_fit_amdahl_recovers_the_parallel_fraction(
    fraction: float, counts: tuple[int, ...]
) -> None:
    curve = ScalingCurve.parse(f"amdahl:{fraction}")
    speedups = {k: curve.speedup(k) for k in counts}
    assert fit_amdahl(speedups) == pytest.approx(fraction, abs=1e-9)


def test_fit_scaling_cuts_at_the_peak_and_clips_superlinear() -> None:
    assert fit_scaling({1: 1.0, 2: 2.3, 4: 3.0, 8: 2.9}).to_spec() == {1: 1.0, 2: 2.0, 4: 3.0}
    assert fit_scaling({1: 1.0, 2: 0.8}).to_spec() == {1: 1.0}
    assert fit_scaling({1: 1.0, 2: 1.9, 4: 3.5}, "amdahl").kind == "amdahl"
    with pytest.raises(ValueError, match="model"):
        fit_scaling({1: 1.0}, "cubic")


def test_fit_profile_from_measurements() -> None:
    profile = fit_profile(
        [
            Measurement(1, (10.0, 12.0), (3.0,)),
            Measurement(2, (6.0, 6.0), (5.0,)),
            Measurement(4, (4.0, 4.0), (4.0,)),
        ],
        checkpoint_gb=0.5,
    )
    assert profile.epoch_seconds == 11.0
    assert profile.curve.speedup(2) == pytest.approx(11 / 6)
    assert (profile.startup_on(1), profile.startup_on(2), profile.startup_on(8)) == (3.0, 5.0, 4.0)
    assert profile.cv_on(1) > 0 and profile.cv_on(2) == 0.0 and profile.cv_on(16) == 0.0
    assert profile.checkpoint_gb == 0.5
    with pytest.raises(ValueError, match="lack 1 worker"):
        fit_profile([Measurement(2, (1.0,))])
    with pytest.raises(ValueError, match="distinct"):
        fit_profile([Measurement(1, (1.0,)), Measurement(1, (2.0,))])


def test_profile_json_round_trip(tmp_path: Path) -> None:
    profile = fit_profile([Measurement(1, (10.0, 11.0), (2.0,)), Measurement(2, (6.0,), (3.0,))])
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    loaded = load_profile(path)
    assert loaded == profile
    assert loaded.workload(max_epochs=9, gpus_per_node=4).epoch_seconds_on(2) == pytest.approx(
        profile.epoch_seconds_on(2)
    )


def test_profile_and_workload_share_one_timing() -> None:
    """Epoch time, scaling and contention are one TrialTiming, copied whole both ways."""
    profile = Profile(epoch_seconds=60, scaling="amdahl:0.9", startup_seconds={1: 5, 4: 9},
                      contention={2: 1.3})  # fmt: skip
    workload = profile.workload(max_epochs=9, gpus_per_node=4)
    assert isinstance(workload, TrialTiming) and isinstance(profile, TrialTiming)
    assert workload.timing() == profile.timing()
    assert (workload.startup_on(4), workload.max_epochs, workload.gpus_per_node) == (5.0, 9, 4)
    back = Profile.from_workload(workload, epoch_cv=0.1)
    assert back.timing() == profile.timing() and back.cv_on(2) == 0.1
    assert hash(back) == hash(Profile.from_workload(workload, epoch_cv=0.1))
    with pytest.raises(ValueError, match="epoch_seconds=0"):
        Profile(epoch_seconds=0, scaling="linear")


def test_hand_written_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "epoch_seconds": 600,
                "scaling": {"1": 1.0, "2": 1.77, "4": 2.93, "8": 4.29},
                "epoch_cv": {"1": 0.02, "4": 0.1},
                "startup_seconds": {"1": 45, "4": 90},
            }
        )
    )
    profile = load_profile(path)
    assert (profile.startup_on(2), profile.startup_on(8)) == (45, 90)
    assert profile.workload(max_epochs=3).startup_seconds == 45
    assert profile.epoch_seconds_on(8) == pytest.approx(600 / 4.29)
    assert (profile.cv_on(1), profile.cv_on(2), profile.cv_on(8)) == (0.02, 0.02, 0.1)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"scaling": "linear"}, "epoch_seconds"),
        ({"epoch_seconds": 1, "scaling": "linear", "epochs": 3}, "unknown profile key"),
        ({"epoch_seconds": -1, "scaling": "linear"}, "epoch_seconds"),
        ({"epoch_seconds": 1, "scaling": "quadratic"}, "scaling"),
        ({"epoch_seconds": 1, "scaling": {"one": 1.0}}, "worker count"),
        ({"epoch_seconds": 1, "scaling": "linear", "epoch_cv": {"0": 0.1}}, "epoch_cv"),
        ({"epoch_seconds": 1, "scaling": "linear", "format": 7}, "format"),
        ({"epoch_seconds": 1, "scaling": "linear", "startup_seconds": {"1": -4}}, "startup"),
    ],
)
def test_bad_profiles_are_named(tmp_path: Path, data: dict[str, object], match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        load_profile(path)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_profile(path)


def test_measurements_from_durations() -> None:
    result = measurements_from_durations(
        {(1, 1): [12.0, 13.0], (1, 3): [32.0, 35.0], (2, 1): [8.0], (2, 3): [18.0]}
    )
    assert result[0] == Measurement(1, (10.0, 11.0), (2.0, 2.0))
    assert result[1] == Measurement(2, (5.0,), (3.0,))
    with pytest.raises(ValueError, match="exactly two"):
        measurements_from_durations({(1, 1): [1.0]})
    with pytest.raises(ValueError, match="repeat both"):
        measurements_from_durations({(1, 1): [1.0], (1, 2): [2.0, 3.0]})


class SubprocessBackend(Backend):
    """A minimal real backend for this test: each launch is a Python process that sleeps
    ``startup + epochs × epoch/workers`` seconds (the interface is the unit under test here;
    the real LocalBackend lives in its own module)."""

    def __init__(self, startup: float, epoch: float) -> None:
        self.startup, self.epoch = startup, epoch
        self.processes: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        self.finished: dict[str, float] = {}

    @property
    def slots(self) -> int:
        return 4

    def start(self, spec: LaunchSpec) -> str:
        seconds = self.startup + spec.target_epochs * self.epoch / spec.workers
        handle = f"launch-{len(self.processes)}"
        process = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
        self.processes[handle] = (process, self.now())
        return handle

    def poll(self, handle: str) -> LaunchStatus:
        process, started = self.processes[handle]
        code = process.poll()
        if code is None:
            return LaunchStatus(LaunchState.RUNNING, started)
        finished = self.finished.setdefault(handle, self.now())
        state = LaunchState.SUCCEEDED if code == 0 else LaunchState.FAILED
        return LaunchStatus(state, started, finished)

    def stop(self, handle: str) -> None:
        process, _ = self.processes[handle]
        if process.poll() is None:
            process.kill()
            process.wait()

    def release(self) -> None:
        for handle in self.processes:
            self.stop(handle)

    def now(self) -> float:
        return time.monotonic()

    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        end = self.now() + timeout_s
        while True:
            done = [h for h in handles if self.poll(h).done]
            if done or self.now() >= end:
                return done
            time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_measure_on_backend_separates_startup_from_epochs() -> None:
    backend = SubprocessBackend(startup=0.2, epoch=0.6)

    def spec(workers: int, epochs: int, repeat: int) -> LaunchSpec:
        return LaunchSpec(
            study_name="profile",
            storage="sqlite:///unused.db",
            trial_number=repeat,
            params={},
            rung=0,
            target_epochs=epochs,
            workers=workers,
            checkpoint_uri="unused",
        )

    measurements = measure_on_backend(backend, spec, workers=(1, 2), epochs=(1, 3), repeats=1)
    profile = fit_profile(measurements)
    # Python's own start-up adds to the 0.2 s; the epoch estimate cancels it out.
    assert profile.epoch_seconds == pytest.approx(0.6, abs=0.25)
    assert profile.curve.speedup(2) == pytest.approx(2.0, abs=0.6)
    assert profile.startup_on(1) >= 0.1
    assert all(p.poll() is not None for p, _ in backend.processes.values())


def test_contention_table_validation_and_round_trip(tmp_path: Path) -> None:
    profile = Profile(epoch_seconds=4, scaling="linear", contention={2: 1.6, 4: 2.5})
    assert [profile.contention_on(n) for n in (0, 1, 2, 3, 4, 8)] == [1.0, 1.0, 1.6, 1.6, 2.5, 2.5]
    assert Profile(epoch_seconds=4, scaling="linear", contention=1.3).contention_on(5) == 1.3
    assert Profile(epoch_seconds=4, scaling="linear").contention_on(2) == 1.0
    path = tmp_path / "p.json"
    save_profile(profile, path)
    assert load_profile(path).to_dict() == profile.to_dict()
    assert json.loads(path.read_text())["contention"] == {"1": 1.0, "2": 1.6, "4": 2.5}
    with pytest.raises(ValueError, match="contention"):
        Profile(epoch_seconds=4, scaling="linear", contention={1: 1.2})
    with pytest.raises(ValueError, match="contention"):
        Profile(epoch_seconds=4, scaling="linear", contention={2: -1.0})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch_seconds": 1, "scaling": "linear", "contention": {"x": 2}}))
    with pytest.raises(ValueError, match="contention"):
        load_profile(bad)


def test_measure_rejects_bad_arguments() -> None:
    backend = SubprocessBackend(startup=0.0, epoch=0.0)
    alone = Measurement(1, (1.0,), (1.0,))
    with pytest.raises(ValueError, match="epochs"):
        measure_on_backend(backend, _spec, epochs=(3, 1))
    with pytest.raises(ValueError, match="exceeds"):
        measure_on_backend(backend, _spec, workers=(1, 8))
    with pytest.raises(ValueError, match="launches"):
        measure_contention(backend, _spec, alone, launches=1)
    with pytest.raises(ValueError, match="one-worker"):
        measure_contention(backend, _spec, Measurement(2, (1.0,), (1.0,)))
    assert not backend.processes


def _spec(workers: int, epochs: int, repeat: int) -> LaunchSpec:
    return LaunchSpec(
        study_name="profile",
        storage="sqlite:///unused.db",
        trial_number=repeat,
        params={},
        rung=0,
        target_epochs=epochs,
        workers=workers,
        checkpoint_uri="unused",
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_measure_contention_runs_launches_together() -> None:
    """Sleeping processes do not compete for cores, so the factor stays near 1."""
    backend = SubprocessBackend(startup=0.2, epoch=0.5)
    (alone,) = measure_on_backend(backend, _spec, workers=(1,), epochs=(1, 2), repeats=1)
    before = len(backend.processes)
    factor = measure_contention(backend, _spec, alone, launches=3, epochs=(1, 2))
    assert len(backend.processes) == before + 6
    assert 0.5 < factor < 2.0
    assert all(p.poll() is not None for p, _ in backend.processes.values())


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_measure_alone_and_together_alternates_launches() -> None:
    """Per epoch count: one launch alone, then two at once; the alone launches give the
    Measurement. Sleeping processes do not compete for cores, so the factor stays near 1."""
    backend = SubprocessBackend(startup=0.2, epoch=0.3)
    alone, factor = measure_alone_and_together(backend, _spec, launches=2, epochs=(1, 2))
    assert len(backend.processes) == 2 * (1 + 2)
    assert alone.workers == 1 and len(alone.epoch_seconds) == 1
    assert 0.5 < factor < 2.0
    assert 0.5 < measure_contention(backend, _spec, launches=2, epochs=(1, 2)) < 2.0
    # With the launches' own reports, each alone launch gives one start-up and one epoch
    # sample: epoch = training / epochs, start-up = wall - training.
    reports = {1: (0.3, 1), 2: (0.6, 2)}
    split, _ = measure_alone_and_together(
        backend, _spec, epochs=(1, 2), reported=lambda spec: reports[spec.target_epochs]
    )
    assert split.epoch_seconds == pytest.approx((0.3, 0.3))
    assert len(split.startup_seconds) == 2
    with pytest.raises(ValueError, match="launches"):
        measure_alone_and_together(backend, _spec, launches=1)
    with pytest.raises(ValueError, match="exceeds"):
        measure_alone_and_together(backend, _spec, launches=64)


def test_epoch_time_past_the_fitted_curve_is_the_measured_one() -> None:
    """Two workers measured slower than one: the table stops at 1 (never planned), but a plan
    that uses 2 anyway is predicted at the measured 2-worker time, not the flat curve's."""
    profile = fit_profile([Measurement(1, (1.0, 1.0)), Measurement(2, (4.0, 6.0))])
    assert profile.curve.to_spec() == {1: 1.0}
    assert profile.epoch_seconds_on(1) == 1.0
    assert profile.epoch_seconds_on(2) == 5.0
    assert profile.epoch_seconds_on(4) == 1.0  # not measured: the curve's (flat) value
    assert Profile.from_dict(profile.to_dict()).epoch_seconds_on(2) == 5.0
