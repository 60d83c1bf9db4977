"""What optuna-dashboard shows of SEER: trial and study *user* attrs, a study note, artifacts.

SEER keeps its state in *system* attrs (:mod:`optuna_seer.integration.keys`), which
optuna-dashboard does not render. This module copies a small, stable set of it into *user*
attrs, which the dashboard shows on every trial page and as columns of its trial table:

* ``seer.rung`` (int): the last rung the trial trained in (0 = first);
* ``seer.workers`` (int): its data-parallel workers (GPUs) in that rung;
* ``seer.dollars`` (float): what it cost, from the ledger (settled when it ended);
* ``seer.stop_reason`` (str): why SEER stopped it; absent if SEER did not.

A trial SEER refused (beyond the plan's width or the budget) carries ``seer.stop_reason``
only. The study carries ``seer.plan`` (the plan in one line), ``seer.deadline_s``,
``seer.budget_dollars``, ``seer.best_trial`` (SEER's pick), and after :func:`publish_report`
``seer.report`` and ``seer.timeline_artifact``; with optuna-dashboard installed the same goes
into the study's note (Markdown, the study's note page), the timeline PNG inline.

**SEER's pick** is :func:`~optuna_seer.integration.ranking.best_finalist` over the
``COMPLETE`` trials (the mean over the last rung first), what ``ElasticTuner`` returns as
``TuningResult.best_trial``. optuna-dashboard's "Best Trial" is Optuna's
``study.best_trial`` (the best single last value); the two can differ, so the pick is marked
on the study, where the dashboard opens: ``seer.best_trial`` and the top of the note, with a
link to the trial. (Not on the trial: Optuna refuses to change a finished trial's attrs, and
the pick can move to an earlier trial when a later one completes.)

When it is written: :class:`~optuna_seer.SeerSampler` calls :func:`on_trial_end` as each
trial ends (``study.optimize`` and ``ElasticTuner`` alike: the tuner tells Optuna through
``study.tell``); ``ElasticTuner`` also calls :func:`on_launch_end` after each launch, so a
trial shows its rung, workers and dollars while it is still ``RUNNING`` between
rungs. A trial end writes the attrs whose value changed (3, 4 for a stop) in one transaction,
with the account the sampler settles then; the pick and the note are rewritten only when the
pick changes. Writing is best effort: a storage error here is logged as a warning and never
fails the trial or the run (the account is then written alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import copy
import importlib
from pathlib import Path
import threading
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._logging import get_logger
from optuna_seer._optuna import set_trial_attrs, storage_of, study_id_of, trial_id_of
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.keys import STUDY_MODE, SYNCHRONOUS, stop_reason
from optuna_seer.integration.ledger import read_ledger, trial_gpu_seconds
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    implicit_placement,
    placement_of,
)
from optuna_seer.planning.plan import Plan, format_seconds

RUNG = "seer.rung"
WORKERS = "seer.workers"
DOLLARS = "seer.dollars"
STOP_REASON = "seer.stop_reason"
TRIAL_ATTRS = (RUNG, WORKERS, DOLLARS)
"""The user attrs every trial SEER placed carries (and ``seer.stop_reason`` if SEER stopped
it: one storage write fewer for the trials it did not)."""

STUDY_PLAN = "seer.plan"
STUDY_DEADLINE = "seer.deadline_s"
STUDY_BUDGET = "seer.budget_dollars"
STUDY_BEST_TRIAL = "seer.best_trial"
STUDY_REPORT = "seer.report"
STUDY_TIMELINE = "seer.timeline_artifact"

DASHBOARD_EXTRA = "dashboard"
"""The optuna-seer extra that installs optuna-dashboard (for the study note)."""

_logger = get_logger(__name__)
_lock = threading.Lock()
_plans_published: dict[tuple[int, int], BaseStorage] = {}


def rung_reached(placed: Mapping[str, Any], step: int | None) -> int:
    """The rung a trial with placement ``placed`` last trained in, after ``step`` epochs.

    Example:
        >>> placed = {"gpus": [1, 2], "ends": [3, 9], "placed_at": 0.0}
        >>> rung_reached(placed, None), rung_reached(placed, 3), rung_reached(placed, 4)
        (0, 0, 1)
    """
    done = 0 if step is None else step
    ends = placed["ends"]
    for index, end in enumerate(ends):
        if done <= end:
            return index
    return len(ends) - 1


def trial_user_attrs(
    trial: FrozenTrial, plan: Plan, implicit: ImplicitPlacement | None, now: float
) -> dict[str, Any]:
    """The SEER user attrs of ``trial`` as of study time ``now`` (see the module docstring);
    ``{}`` for a trial SEER neither placed nor refused. Pure: reads only ``trial``.

    Example:
        >>> import optuna
        >>> from optuna_seer import Budget, Workload, plan_seer
        >>> workload = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=9)
        >>> plan = plan_seer(Budget(deadline="1h", dollars=10, price_per_gpu_hour=3.0), workload, 3)
        >>> trial = optuna.trial.create_trial(
        ...     value=0.9, intermediate_values={1: 0.5, 2: 0.7, 3: 0.9},
        ...     system_attrs={"seer:placement": {"gpus": [1, 1, 1], "ends": [1, 3, 9],
        ...                                      "placed_at": 0.0},
        ...                   "seer:ledger": [240.0, 250.0]})
        >>> trial_user_attrs(trial, plan, None, now=300.0)
        {'seer.rung': 1, 'seer.workers': 1, 'seer.dollars': 0.2}
    """
    placed = placement_of(trial, implicit)
    reason = stop_reason(trial)
    if placed is None:
        return {} if reason is None else {STOP_REASON: reason}
    rung = rung_reached(placed, trial.last_step)
    dollars = trial_gpu_seconds(trial, now, implicit) * plan.price_per_gpu_second
    attrs: dict[str, Any] = {
        RUNG: rung,
        WORKERS: int(placed["gpus"][rung]),
        DOLLARS: round(dollars, 6),
    }
    if reason is not None:
        attrs[STOP_REASON] = reason
    return attrs


def seer_pick(
    trials: Iterable[FrozenTrial], plan: Plan, direction: StudyDirection
) -> FrozenTrial | None:
    """SEER's pick among ``trials``: the best ``COMPLETE`` finalist by
    :func:`~optuna_seer.integration.ranking.best_finalist`, as ``ElasticTuner`` selects it
    (``since``: the last promoting rung's end, 0 for a one-rung plan)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    since = plan.epochs_before(len(plan.rungs) - 1)
    return best_finalist(complete, since, plan.max_epochs, direction)


def write_trial_attrs(
    storage: BaseStorage,
    trial: FrozenTrial,
    plan: Plan,
    implicit: ImplicitPlacement | None,
    now: float,
) -> dict[str, Any]:
    """Write the SEER user attrs of ``trial`` whose value changed; returns those written."""
    changed = changed_user_attrs(trial, plan, implicit, now)
    set_trial_attrs(storage, trial_id_of(trial), user=changed)  # one write on an RDB
    return changed


def changed_user_attrs(
    trial: FrozenTrial, plan: Plan, implicit: ImplicitPlacement | None, now: float
) -> dict[str, Any]:
    """The SEER user attrs of ``trial`` (:func:`trial_user_attrs`) that it does not carry yet
    with that value."""
    return {
        key: value
        for key, value in trial_user_attrs(trial, plan, implicit, now).items()
        if key not in trial.user_attrs or trial.user_attrs[key] != value
    }


def on_trial_end(
    study: optuna.Study,
    trial: FrozenTrial,
    state: TrialState,
    clock: Callable[[], float] | None = None,
    settled: Mapping[str, Any] | None = None,
) -> None:
    """Called by :meth:`SeerSampler.after_trial`: write ``trial``'s SEER user attrs, the plan
    once per study, and, when a ``COMPLETE`` trial changes SEER's pick, mark the new pick.

    ``trial`` is what Optuna's ``tell`` read of it just before (fresh: a running trial is
    never cached), ``state`` the state Optuna is about to store, ``clock`` the sampler's
    (``None``: the pruner's). ``settled``: system attrs the sampler settles at the trial's end
    (its account), written with the user attrs in one transaction; a failure to write them
    raises, anything else here is logged and never fails the trial. Does nothing but write
    ``settled`` without a :class:`~optuna_seer.SeerPruner`.
    """
    storage = storage_of(study)
    system = dict(settled or {})
    pruner = study.pruner
    fresh = None
    user: dict[str, Any] = {}
    if isinstance(pruner, SeerPruner):
        try:
            # A copy with what is about to be stored: the account just settled, the state
            # Optuna stores right after this hook (an in-memory storage hands out its own
            # trial object, which must not change before Optuna's tell does).
            fresh = copy.copy(trial)
            fresh.system_attrs = {**trial.system_attrs, **system}
            fresh.state = state
            now = study_time(study, clock or pruner.clock)
            implicit = implicit_placement(storage, study_id_of(study))
            user = changed_user_attrs(fresh, pruner.plan, implicit, now)
        except Exception as error:  # shown in the dashboard only: never fail the trial for it
            _logger.warning("trial %d: SEER's dashboard attrs not written: %r", trial.number, error)
            fresh, user = None, {}
    try:
        set_trial_attrs(storage, trial_id_of(trial), system=system, user=user)
    except Exception as error:
        if not user:
            raise
        _logger.warning("trial %d: SEER's dashboard attrs not written: %r", trial.number, error)
        set_trial_attrs(storage, trial_id_of(trial), system=system)  # what must land, alone
        return
    if fresh is None or not isinstance(pruner, SeerPruner):
        return
    try:
        _publish_plan_once(study, pruner.plan)
        if state == TrialState.COMPLETE:
            _challenge_pick(study, pruner.plan, fresh)
    except Exception as error:  # shown in the dashboard only: never fail the trial for it
        _logger.warning("trial %d: SEER's dashboard attrs not written: %r", trial.number, error)


def on_launch_end(study: optuna.Study, trial_id: int, now: float) -> None:
    """Called by ``ElasticTuner`` when a launch of a trial ends (the trial stays ``RUNNING``
    between rungs): write its SEER user attrs as of study time ``now``. Never raises."""
    pruner = study.pruner
    if not isinstance(pruner, SeerPruner):
        return
    try:
        storage = storage_of(study)
        implicit = implicit_placement(storage, study_id_of(study))
        _publish_plan_once(study, pruner.plan)
        write_trial_attrs(storage, storage.get_trial(trial_id), pruner.plan, implicit, now)
    except Exception as error:  # shown in the dashboard only: never fail the run for it
        _logger.warning("trial id %d: SEER's dashboard attrs not written: %r", trial_id, error)


def publish_report(
    study: optuna.Study,
    report: str | None = None,
    *,
    best_trial: FrozenTrial | None = None,
    timeline: str | Path | None = None,
    artifact_dir: str | Path | None = None,
) -> str | None:
    """Show a finished run in optuna-dashboard: the report, SEER's pick, the timeline PNG.

    Writes ``seer.report`` (``report``, or when ``None`` the study's :func:`standing`
    against its deadline and budget, with the epoch time measured against the plan), marks
    SEER's pick (``best_trial``, e.g. ``TuningResult.best_trial``; by default
    :func:`seer_pick` over the stored trials),
    uploads ``timeline`` as an Optuna artifact of the study into a
    ``FileSystemArtifactStore`` at ``artifact_dir`` (serve it with
    ``optuna-dashboard <storage> --artifact-dir <artifact_dir>``), and rewrites the study
    note. Returns the artifact id, or ``None`` without a timeline.

    Raises:
        ValueError: The study has no ``SeerPruner``, or ``timeline`` is given without
            ``artifact_dir``.
        FileNotFoundError: ``timeline`` does not exist.
    """
    pruner = study.pruner
    if not isinstance(pruner, SeerPruner):
        raise ValueError(
            f"study {study.study_name!r} has pruner={pruner!r}; publish_report needs the study "
            "SEER ran, created with pruner=SeerPruner(...)."
        )
    if timeline is not None and artifact_dir is None:
        raise ValueError(
            f"timeline={str(timeline)!r} needs artifact_dir=, the directory of the "
            "FileSystemArtifactStore optuna-dashboard serves (--artifact-dir), e.g. "
            "'runs/artifacts' next to the study's database."
        )
    storage, study_id = storage_of(study), study_id_of(study)
    _publish_plan_once(study, pruner.plan)
    if report is None:
        report = standing(study, pruner.plan, study_time(study, pruner.clock))
    storage.set_study_user_attr(study_id, STUDY_REPORT, report)
    artifact_id = None
    if timeline is not None and artifact_dir is not None:
        path = Path(timeline)
        if not path.is_file():
            raise FileNotFoundError(f"timeline={str(path)!r} is no file; draw it first.")
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
        store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=study, mimetype="image/png"
        )
        storage.set_study_user_attr(study_id, STUDY_TIMELINE, artifact_id)
    if best_trial is not None:
        _mark_pick(study, best_trial)
    else:
        _update_pick(study, pruner.plan, extra=None)
    _write_note(study, pruner.plan)
    return artifact_id


def standing(study: optuna.Study, plan: Plan, now: float) -> str:
    """The study's standing as text: trials by state, dollars and time against the plan, and
    for a ``study.optimize`` run the epoch time the budget guard measured against the plan."""
    trials = study.get_trials(deepcopy=False)
    ledger = read_ledger(study, plan, now, trials)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    states = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none"
    text = (
        f"trials: {states}\n"
        f"cost: ${ledger.spent_dollars:,.4f} of ${plan.budget_dollars:,.2f} budget\n"
        f"time: {format_seconds(max(ledger.elapsed_s, 0.0))} of "
        f"{format_seconds(plan.deadline_s)} deadline"
    )
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    pruner = study.pruner
    if isinstance(pruner, SeerPruner) and attrs.get(STUDY_MODE) != SYNCHRONOUS:
        implicit = implicit_placement(storage_of(study), study_id_of(study))
        view, _ = pruner.spend_view(study, now, implicit, trials)
        text += "\n" + view.slowdown_text()
    return text


# ----------------------------------------------------------------- study level
def plan_summary(plan: Plan) -> str:
    """The plan in one line (the dashboard's attribute table shows one line; the note and
    ``str(plan)`` show the whole table).

    Example:
        >>> from optuna_seer import Budget, Workload, plan_seer
        >>> budget = Budget(deadline="1h", dollars=2, price_per_gpu_hour=3.0)
        >>> workload = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=9)
        >>> plan_summary(plan_seer(budget, workload, 3, max_configs=9))
        '9 configurations: 9 x 1 epoch on 1 worker, 3 x 3 epochs on 1 worker, 3 x 9 epochs on \
1 worker; 0:09:00 and $1.65 predicted'
    """
    rungs = ", ".join(
        f"{r.n_trials} x {r.resource} epoch{'s' if r.resource > 1 else ''} on "
        f"{r.gpus_per_trial} worker{'s' if r.gpus_per_trial > 1 else ''}"
        for r in plan.rungs
    )
    return (
        f"{plan.n_configs} configurations: {rungs}; "
        f"{format_seconds(plan.predicted_seconds)} and ${plan.predicted_cost:,.2f} predicted"
    )


def _publish_plan_once(study: optuna.Study, plan: Plan) -> None:
    """Write the plan's study user attrs (and the note) unless this process did, or they are
    there already."""
    storage, study_id = storage_of(study), study_id_of(study)
    key = (id(storage), study_id)
    with _lock:
        if _plans_published.get(key) is storage:
            return
    attrs = storage.get_study_user_attrs(study_id)
    if attrs.get(STUDY_PLAN) != plan_summary(plan):
        storage.set_study_user_attr(study_id, STUDY_PLAN, plan_summary(plan))
        storage.set_study_user_attr(study_id, STUDY_DEADLINE, plan.deadline_s)
        storage.set_study_user_attr(study_id, STUDY_BUDGET, plan.budget_dollars)
        _write_note(study, plan)
    with _lock:
        _plans_published[key] = storage  # the storage is held, so its id is not reused


def _challenge_pick(study: optuna.Study, plan: Plan, told: FrozenTrial) -> None:
    """A trial was just told ``COMPLETE``: it becomes the pick if it beats the stored one.

    Two reads, not a pass over every trial: the stored pick was the best of the trials that
    completed before. (Two trials completing at once in different processes may each compare
    with the same stored pick; :func:`publish_report` recomputes it over all trials.)
    """
    storage, study_id = storage_of(study), study_id_of(study)
    stored = storage.get_study_user_attrs(study_id).get(STUDY_BEST_TRIAL)
    if stored is None:
        _update_pick(study, plan, extra=told)
        return
    current_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(stored))
    pick = seer_pick([storage.get_trial(current_id), told], plan, study.direction)
    if pick is not None and pick.number != stored:
        _mark_pick(study, pick)


def _update_pick(study: optuna.Study, plan: Plan, extra: FrozenTrial | None) -> None:
    """Recompute SEER's pick from the stored trials (``extra``: a trial just told, whose
    state the storage does not hold yet) and mark it if it changed."""
    storage, study_id = storage_of(study), study_id_of(study)
    trials = {t.number: t for t in storage.get_all_trials(study_id, deepcopy=False)}
    if extra is not None:
        trials[extra.number] = extra
    pick = seer_pick(trials.values(), plan, study.direction)
    if pick is not None:
        _mark_pick(study, pick)


def _mark_pick(study: optuna.Study, pick: FrozenTrial) -> None:
    """Make ``pick`` the study's ``seer.best_trial``; rewrite the note when that changed."""
    storage, study_id = storage_of(study), study_id_of(study)
    with _lock:
        if storage.get_study_user_attrs(study_id).get(STUDY_BEST_TRIAL) == pick.number:
            return
        storage.set_study_user_attr(study_id, STUDY_BEST_TRIAL, pick.number)
    if isinstance(study.pruner, SeerPruner):
        _write_note(study, study.pruner.plan)


def note_markdown(study: optuna.Study, plan: Plan) -> str:
    """The study note: SEER's pick, the plan, the report and the timeline, from the study's
    user attrs."""
    attrs = storage_of(study).get_study_user_attrs(study_id_of(study))
    lines = ["## SEER (optuna-seer)", ""]
    pick = attrs.get(STUDY_BEST_TRIAL)
    if pick is not None:
        link = f"/dashboard/studies/{study_id_of(study)}/trials?numbers={pick}"
        lines += [
            f"**SEER's pick: [trial {pick}]({link})** (study user attr `seer.best_trial`): "
            "the best mean over the last rung, as `ElasticTuner` selects it. The dashboard's "
            "*Best Trial* is Optuna's best single last value; where they differ, SEER's pick "
            "is the steadier estimate.",
            "",
        ]
    lines += [
        f"Deadline **{format_seconds(plan.deadline_s)}**, budget "
        f"**${plan.budget_dollars:,.2f}** at ${plan.price_per_gpu_second * 3600:,.2f}/GPU-hour; "
        f"{plan.n_configs} configurations, {len(plan.rungs)} rungs. Each trial's user attrs "
        "`seer.rung`, `seer.workers`, `seer.dollars` and `seer.stop_reason` say "
        "where it got, on how many workers, at what cost, and why SEER stopped it.",
        "",
        "### Plan",
        "",
        "```text",
        str(plan),
        "```",
        "",
    ]
    if attrs.get(STUDY_REPORT):
        lines += ["### Report", "", "```text", str(attrs[STUDY_REPORT]), "```", ""]
    if attrs.get(STUDY_TIMELINE):
        url = f"/artifacts/{study_id_of(study)}/{attrs[STUDY_TIMELINE]}"
        lines += ["### Timeline", "", f"![which trial held which slot when]({url})", ""]
    return "\n".join(lines)


def _write_note(study: optuna.Study, plan: Plan) -> None:
    """Save :func:`note_markdown` as the study's note if optuna-dashboard is installed."""
    try:
        dashboard = importlib.import_module("optuna_dashboard")
    except ImportError:
        return  # the user attrs carry the same; pip install '.[dashboard]' from a clone
    dashboard.save_note(study, note_markdown(study, plan))
