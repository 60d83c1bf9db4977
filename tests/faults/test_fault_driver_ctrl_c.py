"""Ctrl-C in a real driver process mid-rung: the launches stop (their workers end), the
trials stay in play, and the same command continues the study, charging the stopped launches
up to the Ctrl-C only (real driver, real Lightning workers, SQLite)."""

from __future__ import annotations

import re
import signal
import time

from driver_procs import (
    STUDY,
    StartDriver,
    kill_driver_when,
    study_pids,
    trials_of,
    wait_until_gone,
)
import optuna
import pytest
from replay_study import assert_consistent_steps

from optuna_seer.integration.keys import STUDY_DRIVER_PAUSED, TRIAL_IN_FLIGHT, TRIAL_LAUNCHES


def _python_handles_ctrl_c() -> None:
    """In the driver, before exec: SIGINT at its default, so Python raises KeyboardInterrupt
    for it even where this test runner ignores SIGINT (as a background job does)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_pauses_a_real_driver_and_the_same_command_continues(
    start_driver: StartDriver,
) -> None:
    run = start_driver(preexec_fn=_python_handles_ctrl_c)
    url, driver = run.url, run.process
    # Mid-rung: as soon as a rung-0 value is in the storage (the launches still run).
    kill_driver_when(
        driver, url, lambda ts: any(t.intermediate_values for t in ts), signum=signal.SIGINT
    )
    output = (driver.communicate()[0] or b"").decode()
    assert driver.returncode != 0 and "KeyboardInterrupt" in output, output[-3000:]

    # The driver stopped its launches itself: no worker is left, no trial was failed.
    assert wait_until_gone(study_pids(STUDY)) == []
    trials = trials_of(url)
    assert {t.state.name for t in trials} <= {"RUNNING", "PRUNED"}, output[-3000:]
    study = optuna.load_study(study_name=STUDY, storage=url)
    paused_at = float(study._storage.get_study_system_attrs(study._study_id)[STUDY_DRIVER_PAUSED])
    in_flight = [
        t.system_attrs[TRIAL_IN_FLIGHT]
        for t in trials
        if t.system_attrs.get(TRIAL_IN_FLIGHT) is not None
        and int(t.system_attrs[TRIAL_IN_FLIGHT]["launch"])
        >= len(t.system_attrs.get(TRIAL_LAUNCHES, []))
    ]

    time.sleep(5.0)  # downtime, which nobody pays for
    resumed = run.rerun(timeout_s=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    found = re.search(
        r"resumed study 'resume' at rung ([01]) .*?; ([\d,.]+) slot-seconds charged for "
        r"launches the stopped driver left running \(up to the Ctrl-C that paused the driver\)",
        resumed.stdout,
    )
    assert found, resumed.stdout
    trials = trials_of(url)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    assert_consistent_steps(study)

    # The ledger: every finished launch once, plus the stopped ones from their start to the
    # Ctrl-C, not over the downtime.
    ledger = sum(float(t.system_attrs["seer:ledger"][0]) for t in trials)
    launched = sum(
        (float(r["finished_at"]) - float(r["started_at"])) * int(r["workers"])
        for t in trials
        for r in t.system_attrs.get(TRIAL_LAUNCHES, [])
    )
    lost = float(found.group(2).replace(",", ""))
    assert ledger == pytest.approx(launched + lost, abs=0.5)
    assert (lost > 0) == bool(in_flight)
    stopped = sum((paused_at - float(f["started_at"])) * int(f["workers"]) for f in in_flight)
    assert lost == pytest.approx(stopped, abs=0.5)  # up to the Ctrl-C, exactly
