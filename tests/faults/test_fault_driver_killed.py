"""The driver SIGKILLed mid-study: running the same command with resume=True continues it
(real driver processes, real Lightning workers, SQLite) without repeating finished rungs or
charging their cost twice."""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
import pytest

import optuna_seer
from optuna_seer.trial_attrs import TRIAL_LAUNCHES

HERE = Path(__file__).resolve().parent
ROOT = str(Path(optuna_seer.__file__).resolve().parent.parent)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _study_pids(study_name: str) -> list[int]:
    """Live worker processes of ``study_name`` (they carry SEER_STUDY in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"SEER_STUDY={study_name}".encode() in raw.split(b"\0"):
            found.append(int(entry.name))
    return found


def _launch_records(url: str) -> dict[int, list[dict[str, object]]]:
    trials = optuna.load_study(study_name="resume", storage=url).get_trials(deepcopy=False)
    return {t.number: list(t.system_attrs.get(TRIAL_LAUNCHES, [])) for t in trials}


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_sigkilled_driver_resumes_without_repeating_rungs_or_double_charging(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    command = [sys.executable, str(HERE / "resume_driver.py"), url, str(tmp_path)]
    driver = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Kill the driver as soon as one rung-0 launch has finished (the other may still run).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            if any(_launch_records(url).values()):
                break
        except (KeyError, optuna.exceptions.StorageInternalError, ValueError):
            pass
        time.sleep(0.2)
    assert driver.poll() is None, driver.communicate()[0].decode()[-3000:]
    # The machine the driver and its local workers ran on goes down: SIGKILL them all.
    os.kill(driver.pid, signal.SIGKILL)
    for pid in _study_pids("resume"):
        os.kill(pid, signal.SIGKILL)
    driver.wait()
    before = _launch_records(url)
    finished_before = {n for n, records in before.items() if records}
    assert finished_before

    resumed = subprocess.run(
        [*command, "--resume"], env=_env(), capture_output=True, text=True, timeout=360
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # Under load the kill may land after rung 0 ended (the driver already in rung 1): either
    # way the resumed driver must pick up where the study stands and repeat no finished rung.
    assert re.search(r"resumed study 'resume' at rung [01]\b", resumed.stdout), resumed.stdout

    study = optuna.load_study(study_name="resume", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    after = _launch_records(url)
    for number in finished_before:
        # A rung a trial finished before the kill is not run again.
        assert [r["rung"] for r in after[number]].count(0) == 1, after[number]
    (finalist,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(finalist.intermediate_values) == [1, 2, 3]
    # The ledger holds every finished launch once, plus at most the killed launches' time up
    # to the resume (charged as an upper bound).
    ledger = sum(float(t.system_attrs["seer:ledger"][0]) for t in trials)
    launched = sum(
        (float(r["finished_at"]) - float(r["started_at"])) * int(r["workers"])  # type: ignore[arg-type]
        for records in after.values()
        for r in records
    )
    assert launched <= ledger + 1.0
    lost = ledger - launched
    assert lost <= 2 * 240, (ledger, launched)
    assert f"best: trial {finalist.number}" in resumed.stdout
