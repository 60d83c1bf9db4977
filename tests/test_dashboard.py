"""What optuna-dashboard shows of SEER: the trial and study user attrs, on real SQLite studies.

``study.optimize`` with the SEER pair, and the real ``ElasticTuner`` on a ``ReplayBackend``
(recorded curves on a simulated clock, the study in SQLite); the slow test serves the study
with the real ``optuna-dashboard`` on loopback and reads its JSON API.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer._ports import free_port
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.execution.tuner import ElasticTuner, TuningResult
from optuna_seer.integration import dashboard
from optuna_seer.integration.keys import STUDY_MODE, SYNCHRONOUS, TRIAL_LEDGER, stop_reason
from optuna_seer.integration.ledger import trial_gpu_seconds
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload

HAS_DASHBOARD = importlib.util.find_spec("optuna_dashboard") is not None
STABLE = set(dashboard.TRIAL_ATTRS)


def _optimize(db: Path, n_trials: int = 12) -> optuna.Study:
    """A small real study.optimize run with the SEER pair on SQLite (9 configurations)."""
    workload = Workload(epoch_seconds=10.0, scaling="linear", max_epochs=9)
    pruner = SeerPruner(
        budget=Budget(deadline="10m", dollars=0.3, price_per_gpu_hour=3.0),
        workload=workload,
        reduction_factor=3,
        max_configs=9,
    )
    study = optuna.create_study(
        storage=f"sqlite:///{db}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=pruner,
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        accuracy = 0.0
        for epoch in range(1, workload.max_epochs + 1):
            accuracy = 1 - 1 / (1 + 100 * lr * epoch)
            trial.report(accuracy, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study.optimize(objective, n_trials=n_trials)
    return study


def _check_trial_attrs(study: optuna.Study) -> None:
    """Every trial SEER placed carries the stable set, consistent with SEER's system attrs."""
    implicit = implicit_placement(storage_of(study), study_id_of(study))
    plan = study.pruner.plan  # type: ignore[attr-defined]
    placed = [t for t in study.trials if placement_of(t, implicit) is not None]
    assert placed
    for trial in placed:
        attrs = trial.user_attrs
        assert set(attrs) >= STABLE, (trial.number, attrs)
        assert attrs.get(dashboard.STOP_REASON) == stop_reason(trial)
        # The settled cost: the ledger's, once the trial ended (it accrues no more).
        dollars = trial_gpu_seconds(trial, math.inf, implicit) * plan.price_per_gpu_second
        assert attrs[dashboard.DOLLARS] == pytest.approx(dollars, abs=1e-6)
        where = placement_of(trial, implicit)
        assert where is not None
        assert trial.last_step is not None
        assert where["ends"][attrs[dashboard.RUNG]] >= trial.last_step
        assert attrs[dashboard.WORKERS] == where["gpus"][attrs[dashboard.RUNG]]
        if trial.state == TrialState.PRUNED:
            assert attrs[dashboard.STOP_REASON], trial.number


def test_study_optimize_trials_carry_the_seer_user_attrs_on_sqlite(tmp_path: Path) -> None:
    study = _optimize(tmp_path / "seer.db")
    # Read back through a fresh storage, as optuna-dashboard reads it.
    again = optuna.load_study(
        study_name=study.study_name,
        storage=f"sqlite:///{tmp_path / 'seer.db'}",
        pruner=study.pruner,
    )
    _check_trial_attrs(again)
    states = {t.state for t in again.trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    pruned = [t for t in again.trials if t.state == TrialState.PRUNED]
    assert any(t.user_attrs[dashboard.STOP_REASON].startswith("rung 0") for t in pruned)
    plan = study.pruner.plan  # type: ignore[attr-defined]
    pick = dashboard.seer_pick(again.trials, plan, again.direction)
    assert pick is not None
    attrs = again.user_attrs
    assert attrs[dashboard.STUDY_BEST_TRIAL] == pick.number
    assert attrs[dashboard.STUDY_PLAN] == dashboard.plan_summary(plan)
    assert attrs[dashboard.STUDY_BUDGET] == plan.budget_dollars
    assert attrs[dashboard.STUDY_DEADLINE] == plan.deadline_s


def test_a_study_without_the_seer_pruner_gets_no_attrs(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'plain.db'}", sampler=SeerSampler())
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    assert all(not t.user_attrs for t in study.trials)
    assert not study.user_attrs


def test_refused_trials_carry_only_their_stop_reason(tmp_path: Path) -> None:
    study = _optimize(tmp_path / "seer.db", n_trials=12)
    # The plan is 9 wide: SeerSampler stops the study; ask past it to see a refusal.
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    study.tell(trial, state=TrialState.PRUNED)
    refused = study.trials[-1]
    assert set(refused.user_attrs) == {dashboard.STOP_REASON}
    assert "beyond the plan's width" in refused.user_attrs[dashboard.STOP_REASON]


def _replay_study(tmp_path: Path) -> tuple[optuna.Study, TuningResult]:
    """The real ElasticTuner on recorded curves (simulated clock), the study in SQLite;
    the last rung gives each finalist 2 workers."""
    curves = [
        RecordedCurve(val_acc=tuple(0.1 * c + 0.01 * e for e in range(3)), test_acc=(0.5,) * 3)
        for c in range(1, 5)
    ]
    workload = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=3, startup_seconds=20.0)
    price = 3.0 / 3600
    shapes = [RungShape(4, 1, 1), RungShape(2, 3, 2)]
    plan = Plan(
        rungs=schedule(shapes, workload, price, ClusterLimits(max_gpus=4)),
        reduction_factor=2,
        deadline_s=1e6,
        budget_dollars=1e6,
        price_per_gpu_second=price,
        min_marginal_speedup=0.2,
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'replay.db'}")
    backend = ReplayBackend(curves, "linear", 60.0, slots=4, startup_seconds=20.0, storage=storage)
    study = optuna.create_study(
        storage=storage,
        study_name="replay",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(0), clock=backend.now),
        pruner=SeerPruner(plan=plan, clock=backend.now),
    )
    result = ElasticTuner(
        study,
        plan,
        backend=backend,
        train="benchmarks.seer_arm:replayed_training",
        checkpoints=str(tmp_path / "ckpt"),
        search_space=lambda trial: trial.suggest_int("config_id", 0, len(curves) - 1),
        workload=workload,
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
        drift_tolerance=math.inf,
    ).run()
    return study, result


def test_elastic_tuner_trials_carry_the_attrs_and_the_study_marks_its_pick(
    tmp_path: Path,
) -> None:
    study, result = _replay_study(tmp_path)
    _check_trial_attrs(study)
    assert result.best_trial is not None
    by_number = {t.number: t for t in study.trials}
    for launch in result.launches:  # each trial's last launch says its rung and workers
        last = max(
            (r for r in result.launches if r.trial_number == launch.trial_number),
            key=lambda r: r.rung,
        )
        attrs = by_number[launch.trial_number].user_attrs
        assert (attrs[dashboard.RUNG], attrs[dashboard.WORKERS]) == (last.rung, last.workers)
    assert {t.user_attrs[dashboard.WORKERS] for t in study.trials} == {1, 2}
    # SEER's pick on the study is the tuner's best trial.
    assert study.user_attrs[dashboard.STUDY_BEST_TRIAL] == result.best_trial.number


def test_elastic_tuner_trials_show_their_rung_while_running_between_rungs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each launch (the trial stays RUNNING between rungs) the trial's page already
    shows the rung it finished, its workers and the dollars charged so far."""
    from optuna_seer.execution import rung as rung_module

    seen: list[tuple[str, dict[str, object]]] = []

    def recording(study: optuna.Study, trial_id: int, now: float) -> None:
        dashboard.on_launch_end(study, trial_id, now)
        trial = storage_of(study).get_trial(trial_id)
        seen.append((trial.state.name, dict(trial.user_attrs)))

    monkeypatch.setattr(rung_module, "on_launch_end", recording)
    _study, result = _replay_study(tmp_path)
    assert len(seen) == len(result.launches) == 6
    rung0 = [attrs for state, attrs in seen[:4]]
    assert {state for state, _ in seen} == {"RUNNING"}
    for attrs in rung0:
        assert (attrs[dashboard.RUNG], attrs[dashboard.WORKERS]) == (0, 1)
        # 20 s start-up + one 60 s epoch on 1 worker at $3/GPU-hour
        assert attrs[dashboard.DOLLARS] == pytest.approx(80 * 3.0 / 3600, abs=1e-6)
    for _, attrs in seen[4:]:
        assert (attrs[dashboard.RUNG], attrs[dashboard.WORKERS]) == (1, 2)
        # rung 0's 80 s on 1 worker, then 20 s + 2 epochs of 30 s on 2 workers
        assert attrs[dashboard.DOLLARS] == pytest.approx((80 + 2 * 80) * 3.0 / 3600, abs=1e-6)


def test_a_storage_error_is_logged_and_never_fails_the_trial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injected into the database: every write of a trial user attr aborts. The trials
    still finish as they would, with their accounts settled (written with the user attrs in
    one transaction, then alone), and each failed write is a warning."""
    db = tmp_path / "seer.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}")  # Optuna's tables, to put triggers on
    with contextlib.closing(sqlite3.connect(db)) as connection:
        for event in ("INSERT", "UPDATE"):
            connection.execute(
                f"CREATE TRIGGER disk_full_{event.lower()} BEFORE {event} ON "
                "trial_user_attributes BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        connection.commit()
    with caplog.at_level("WARNING", logger="optuna.optuna_seer.integration.dashboard"):
        study = _optimize(db)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(not t.user_attrs for t in study.trials)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(TRIAL_LEDGER in t.system_attrs for t in complete)
    warned = [r for r in caplog.records if "dashboard attrs not written" in r.getMessage()]
    assert len(warned) == len(study.trials)
    assert "disk full" in warned[0].getMessage()


def test_publish_report_uploads_the_timeline_and_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from optuna_seer.cli.plots import plot_timeline
    from optuna_seer.execution.report import format_report

    study, result = _replay_study(tmp_path)
    png = plot_timeline(result, tmp_path / "timeline.png")
    with pytest.raises(ValueError, match="artifact_dir"):
        dashboard.publish_report(study, "report", timeline=png)
    artifact = dashboard.publish_report(
        study,
        format_report(result),
        best_trial=result.best_trial,
        timeline=png,
        artifact_dir=tmp_path / "artifacts",
    )
    assert artifact is not None
    assert (tmp_path / "artifacts" / artifact).read_bytes() == png.read_bytes()
    listed = optuna.artifacts.get_all_artifact_meta(study)
    assert [a.artifact_id for a in listed] == [artifact]
    attrs = study.user_attrs
    assert attrs[dashboard.STUDY_REPORT] == format_report(result)
    assert attrs[dashboard.STUDY_TIMELINE] == artifact
    note = dashboard.note_markdown(study, result.plan)
    assert f"SEER's pick: [trial {result.best_trial.number}]" in note  # type: ignore[union-attr]
    assert f"/artifacts/{study_id_of(study)}/{artifact}" in note
    if HAS_DASHBOARD:
        import optuna_dashboard

        assert optuna_dashboard.get_note(study) == note


def test_publish_report_without_a_report_writes_the_standing(tmp_path: Path) -> None:
    study = _optimize(tmp_path / "seer.db")
    assert dashboard.publish_report(study) is None
    report = study.user_attrs[dashboard.STUDY_REPORT]
    assert report.startswith("trials: ") and "of $0.30 budget" in report
    # study.optimize: the epoch time the budget guard measured against the plan, per rung.
    slowdown = report.splitlines()[-1]
    assert "x the plan's time, per rung" in slowdown, report
    per_rung = slowdown.split("per rung ")[1].split(":")[0].split(", ")
    assert len(per_rung) == len(study.pruner.plan.rungs)  # type: ignore[attr-defined]
    assert all(float(v) >= 0 for v in per_rung)  # the epochs here take ms, not the plan's 10 s
    # An ElasticTuner run keeps its own re-planner's account: not shown there.
    study._storage.set_study_system_attr(study._study_id, STUDY_MODE, SYNCHRONOUS)
    dashboard.publish_report(study)
    assert "the plan's time" not in study.user_attrs[dashboard.STUDY_REPORT]
    with pytest.raises(ValueError, match="SeerPruner"):
        dashboard.publish_report(optuna.create_study())


def _get_json(url: str, timeout_s: float = 60.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DASHBOARD, reason="optuna-dashboard not installed (dashboard extra)")
def test_the_real_dashboard_serves_the_seer_attrs_on_loopback(tmp_path: Path) -> None:
    """optuna-dashboard, served on 127.0.0.1 from the SQLite file, returns the trial and study
    user attrs and the note in its JSON API (what its pages render)."""
    study = _optimize(tmp_path / "seer.db")
    dashboard.publish_report(study)
    port = free_port()
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert command is not None
    server = subprocess.Popen(
        [command, f"sqlite:///{tmp_path / 'seer.db'}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{study_id_of(study)}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    trials = {t["number"]: t for t in detail["trials"]}
    for trial in study.trials:
        served = {a["key"]: a["value"] for a in trials[trial.number]["user_attrs"]}
        assert set(served) == set(trial.user_attrs)
        assert served[dashboard.RUNG] == str(trial.user_attrs[dashboard.RUNG])
    study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert study_attrs[dashboard.STUDY_BEST_TRIAL] == str(study.user_attrs["seer.best_trial"])
    assert "SEER's pick" in detail["note"]["body"]
