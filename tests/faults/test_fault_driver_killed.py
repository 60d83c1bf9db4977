"""The driver SIGKILLed mid-rung, alone: its local workers end themselves, and running the
*same command* again continues the study (real driver processes, real Lightning workers,
SQLite) without repeating a finished rung, leaving a gap in any trial's values or charging
the killed launch twice; the deadline clock keeps running from the first start. A third run
of the same command finds the study finished and prints its stored result, running nothing.
"""

from __future__ import annotations

import re
import time
from typing import Any

from driver_procs import (
    STUDY,
    StartDriver,
    kill_driver_when,
    study_pids,
    trials_of,
    wait_until_gone,
)
import optuna
from optuna.trial import TrialState
import pytest
from replay_study import assert_consistent_steps

from optuna_seer.execution.tuner import HEARTBEAT_SECONDS
from optuna_seer.integration.keys import STUDY_STARTED_AT, TRIAL_IN_FLIGHT, TRIAL_LAUNCHES


def _launch_records(url: str) -> dict[int, list[dict[str, Any]]]:
    return {t.number: list(t.system_attrs.get(TRIAL_LAUNCHES, [])) for t in trials_of(url)}


def _started_at(study: optuna.Study) -> float:
    """When the study's deadline clock started (SeerSampler sets it at the first trial)."""
    return float(study._storage.get_study_system_attrs(study._study_id)[STUDY_STARTED_AT])


def _seconds(clock: str) -> float:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return 3600.0 * hours + 60.0 * minutes + seconds


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_same_command_resumes_a_sigkilled_driver_and_then_reports_it_finished(
    start_driver: StartDriver,
) -> None:
    first_start = time.time()
    driver = start_driver()
    url = driver.url
    # Mid-rung: as soon as a rung-0 value is in the storage (the launches still run).
    killed_at = kill_driver_when(
        driver.process, url, lambda ts: any(t.intermediate_values for t in ts)
    )

    # Only the driver was killed: its workers end themselves, and none is left to train
    # beside the relaunch (asserted by pid through /proc, within 30 s).
    assert wait_until_gone(study_pids(STUDY)) == []
    before = _launch_records(url)
    in_flight = {
        t.number: t.system_attrs[TRIAL_IN_FLIGHT]
        for t in trials_of(url)
        if t.system_attrs.get(TRIAL_IN_FLIGHT) is not None
        and int(t.system_attrs[TRIAL_IN_FLIGHT]["launch"]) >= len(before[t.number])
    }
    study = optuna.load_study(study_name=STUDY, storage=url)
    started_at = _started_at(study)
    assert first_start <= started_at <= killed_at

    # Resume only after more downtime than a killed launch may be charged for.
    time.sleep(max(killed_at + 2 * HEARTBEAT_SECONDS + 5.0 - time.time(), 0.0))
    resumed = driver.rerun(timeout_s=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # Under load the kill may land after rung 0 ended (the driver already in rung 1): either
    # way the resumed driver picks up where the study stands and repeats no finished rung.
    found = re.search(
        r"resumed study 'resume' at rung ([01]) .*?; ([\d,.]+) slot-seconds charged", resumed.stdout
    )
    assert found, resumed.stdout

    trials = trials_of(url)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    after = _launch_records(url)
    for number, records in after.items():
        # No rung ran twice for a trial (a failed launch retried is not a repeat) ...
        done = [r["rung"] for r in records if r["state"] != "failed"]
        assert len(done) == len(set(done)), records
        # ... and what finished before the kill is kept, not run again.
        assert records[: len(before[number])] == before[number]
    assert_consistent_steps(study)  # every trial's values: epochs 1..last, no gap
    (finalist,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(finalist.intermediate_values) == [1, 2, 3]

    # The ledger: every finished launch once, plus the killed launches once, from their
    # start to (at most two heartbeats past) the driver's death, when they ended too; the
    # downtime until the resume is not charged.
    ledger = sum(float(t.system_attrs["seer:ledger"][0]) for t in trials)
    launched = sum(
        (float(r["finished_at"]) - float(r["started_at"])) * int(r["workers"])
        for records in after.values()
        for r in records
    )
    lost = float(found.group(2).replace(",", ""))
    assert ledger == pytest.approx(launched + lost, abs=0.5)
    starts = [float(f["started_at"]) for f in in_flight.values()]  # on the driver's clock
    workers = [int(f["workers"]) for f in in_flight.values()]
    assert "up to the driver's last heartbeat" in resumed.stdout
    assert (lost > 0) == bool(in_flight)
    ended = killed_at + 2 * HEARTBEAT_SECONDS + 1.0
    assert lost <= sum((ended - s) * k for s, k in zip(starts, workers)) + 1.0

    # The deadline clock ran from the first start, across the kill.
    assert _started_at(study) == started_at
    actual = re.search(r"time: predicted [\d:]+, actual ([\d:]+)", resumed.stdout)
    assert actual is not None, resumed.stdout
    assert _seconds(actual.group(1)) >= killed_at - started_at - 1.0

    # The same command once more: the study is finished; it says so, prints the stored
    # result and runs nothing (no launch, no charge).
    again = driver.rerun(timeout_s=120)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "already finished" in again.stdout and "nothing was run" in again.stdout
    assert f"best: trial {finalist.number}" in again.stdout
    assert _launch_records(url) == after
    assert sum(float(t.system_attrs["seer:ledger"][0]) for t in trials_of(url)) == ledger
