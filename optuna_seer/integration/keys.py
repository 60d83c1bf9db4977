"""Where SEER keeps its state in Optuna storage: the system-attr keys and rung records.

Everything lives in study and trial *system attrs*, written through the storage (as Optuna's
own pruners do), so every process sharing the study (SQLite, journal file, RDB, gRPC proxy)
sees the same plan, clock, placements and ledger.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from optuna.trial import FrozenTrial

STUDY_PLAN = "seer:plan"
STUDY_STARTED_AT = "seer:started_at"
STUDY_MODE = "seer:mode"
STUDY_PREDICTION = (
    "seer:prediction"  # what the simulator predicted for the run (optuna-seer report)
)
SYNCHRONOUS = "synchronous"

TRIAL_PLACEMENT = "seer:placement"
"""A trial's explicit placement (see :mod:`optuna_seer.integration.trial_gpus`)."""
STUDY_IMPLICIT_PLACEMENT = "seer:implicit_placement"
"""Where wall-clock trials without their own placement sit
(:mod:`optuna_seer.integration.trial_gpus`)."""
TRIAL_BEYOND_PLAN = "seer:beyond_plan"
TRIAL_LEDGER = "seer:ledger"
TRIAL_STOP_REASON = "seer:stop_reason"
TRIAL_TIE_BREAK = "seer:tie_break"
"""A trial's second metric at its last reported step (:mod:`optuna_seer.integration.tie_break`)."""

STUDY_EXECUTOR_PROGRESS = "seer:executor_progress"
"""ElasticTuner's progress: the rung it is running and the (re-planned) rungs, for resuming."""
STUDY_DRIVER_ALIVE = "seer:driver_alive_at"
"""When ElasticTuner's driver last showed it was alive (a heartbeat while trials run)."""
STUDY_DRIVER_PAUSED = "seer:driver_paused_at"
"""When Ctrl-C paused ElasticTuner's driver (its launches stopped then); a rerun continues."""
TRIAL_LAUNCHES = "seer:launches"
"""Every finished launch of a trial (rung, workers, times, state, checkpoint), for resuming."""
TRIAL_IN_FLIGHT = "seer:in_flight"
"""The trial's running launch (rung, workers, start) or ``None``: what a killed driver left."""
STUDY_DRIVER_LEASE = "seer:driver_lease"
"""Which ElasticTuner driver runs the study (its id, host, pid, last renewal in study time),
or ``None`` once released (:mod:`optuna_seer.execution.driver_lock`)."""
STUDY_HEARTBEAT = "seer:heartbeat"
"""How often ``study.optimize`` trials beat and after how long without a beat one is dead
(:mod:`optuna_seer.integration.heartbeat`); the first process to run a trial stores it."""
TRIAL_LEASE = "seer:lease"
"""The workers a running trial holds, ``{"pool", "slots", "rung", "at"}``, or ``None`` between
its rungs (:mod:`optuna_seer.integration.leases`); absent for trials that never lease."""
TRIAL_SEGMENT = "seer:segment"
"""``[rung, study time, step]``: the trial's first report inside ``rung`` (the asynchronous
pruner measures a rung's epoch time from there, so waiting for workers and a relaunch's
start-up never count as training)."""
TRIAL_HEARTBEAT = "seer:heartbeat"
"""When (study time) the process running the trial last showed it was alive."""
TRIAL_RERUN_OF = "seer:rerun_of"
"""The number of the trial, parked at the last rung's door, whose configuration this trial
trains again (:mod:`optuna_seer.integration.reruns`)."""


def rung_value_key(rung: int) -> str:
    """The trial attr where a synchronous decision records the value a trial had at the end
    of ``rung`` (asynchronous pruning writes :func:`rung_end_key` instead)."""
    return f"seer:rung_{rung}_value"


@functools.cache
def rung_end_key(rung: int) -> str:
    """The trial attr the asynchronous pruner writes, once, when a trial ends ``rung``.

    One write carries all it records there (see :func:`rung_end`), so a rung end costs SEER
    one storage write, as it costs Optuna's ``SuccessiveHalvingPruner``.
    """
    return f"seer:rung_{rung}_end"


_RUNG_END = re.compile(r"seer:rung_\d+_end")


def rung_end(
    value: float,
    mean: float,
    gpu_seconds: float,
    as_of: float,
    stop: str | None = None,
    rank: RungRank | None = None,
) -> dict[str, Any]:
    """What the trial had at a rung end: its ``value``, the ``mean`` of its values over the
    rung (the tie-break of :data:`RungRank`), its cost account settled as of then
    (``[gpu_seconds, as_of]``, as in ``seer:ledger``), and why it stopped there, if it did;
    and its ``rank`` there where it is not ``(value, mean)`` (``SeerPruner(promote_by=
    "tie_break")``)."""
    record: dict[str, Any] = {"value": value, "mean": mean, "ledger": [gpu_seconds, as_of]}
    if stop is not None:
        record["stop"] = stop
    if rank is not None:
        record["rank"] = [float(r) for r in rank]
    return record


def rung_value(attrs: dict[str, Any], rung: int) -> float | None:
    """The value a trial (by its system ``attrs``) had at the end of ``rung``, if recorded."""
    record = attrs.get(rung_end_key(rung))
    if record is not None:
        return float(record["value"])
    value = attrs.get(rung_value_key(rung))
    return None if value is None else float(value)


RungRank = tuple[float, float]
"""How the asynchronous pruner compares trials at a rung end, as the synchronous decision
does (:func:`optuna_seer.integration.ranking.rank_key`): the value there, ties to the mean
over the rung. Both in the study's direction: compare tuples with ``>`` to maximise."""


def rung_rank(attrs: dict[str, Any], rung: int) -> RungRank | None:
    """A trial's :data:`RungRank` at the end of ``rung``, if recorded: the record's ``rank``
    where it has one, else its value and mean (a record written before the mean was kept
    ranks as its value twice)."""
    value = rung_value(attrs, rung)
    if value is None:
        return None
    record = attrs.get(rung_end_key(rung))
    if record is not None and record.get("rank") is not None:
        first, second = record["rank"]
        return float(first), float(second)
    mean = record.get("mean") if record is not None else None
    return value, value if mean is None else float(mean)


def ranked_by_tie_break(attrs: dict[str, Any], rung: int) -> bool:
    """Whether a trial's record of ``rung``'s end ranks it by the tie-break metric (it keeps a
    ``rank`` that is not its value: ``SeerPruner(promote_by="tie_break")``)."""
    record = attrs.get(rung_end_key(rung))
    return record is not None and record.get("rank") is not None


def counted_rank(attrs: dict[str, Any], rung: int) -> RungRank | None:
    """The :data:`RungRank` a trial had at the end of ``rung`` as the ranking counts it: a
    re-run's (:data:`TRIAL_RERUN_OF`) values are its parked trial's configuration again, so
    they count once, as that trial's."""
    if attrs.get(TRIAL_RERUN_OF) is not None:
        return None
    return rung_rank(attrs, rung)


TRIAL_AWAITING_RERUN = "seer:awaiting_rerun"
"""Set while a trial asked beyond the plan's width (or its budget) waits to learn whether it
re-runs a parked finalist: it is no configuration the others wait for."""
TRIAL_AWAITING_SEAT = "seer:awaiting_seat"
"""Set while a trial that ended the last-but-one rung waits, without workers, to learn whether
it enters the last one (:func:`optuna_seer.rungs`): it trains nothing the others wait for."""


def stop_reason(trial: FrozenTrial) -> str | None:
    """Why SEER stopped ``trial`` (``None`` if it did not): the executor's or a deadline
    stop's ``seer:stop_reason``, or the stop recorded with a rung end.

    Example:
        >>> reasons = [stop_reason(t) for t in study.trials]  # doctest: +SKIP
    """
    attrs = trial.system_attrs
    reason = attrs.get(TRIAL_STOP_REASON)
    if reason is not None:
        return str(reason)
    for key, record in attrs.items():
        if _RUNG_END.fullmatch(key) and "stop" in record:
            return str(record["stop"])
    return None


def launch_timing_key(rung: int) -> str:
    """The trial attr where a worker records how long its launch for ``rung`` trained."""
    return f"seer:rung_{rung}_training"


def checkpoint_fallback_key(rung: int) -> str:
    """The trial attr where a worker records that its resume checkpoint for ``rung`` was
    corrupt or missing, and which one it used instead (``None``: it started from scratch)."""
    return f"seer:rung_{rung}_checkpoint_fallback"


def promoted_key(rung: int) -> str:
    """The trial attr, set by a synchronous decision, saying if the trial survived ``rung``."""
    return f"seer:rung_{rung}_promoted"
