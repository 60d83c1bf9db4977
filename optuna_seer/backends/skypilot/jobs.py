"""A trial on its cluster as a SkyPilot job: the GPUs of its slot, and the job itself.

The cluster manager (:mod:`optuna_seer.backends.skypilot.backend`) places each launch on a slot
of a cluster, then: :func:`submit` takes the slot's GPUs and runs the trial there with
``sky exec``, :func:`outcome` reads what ``sky.job_status`` says of the job as a
:class:`~optuna_seer.backends.base.LaunchState`, :func:`cancel` cancels it with
``sky.cancel``, :func:`release_slot` gives the GPUs back (counting the time they were held),
and :func:`requeue` sends a trial whose cluster vanished back to the queue.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import time
from typing import Any

from optuna_seer.backends.base import LaunchSpec, LaunchState
from optuna_seer.backends.skypilot.clusters import ClusterRecord, LaunchRecord
from optuna_seer.backends.skypilot.failures import job_failure, log_tail
from optuna_seer.planning.placement import TrialSlot

RUNNING_JOB_STATES = frozenset({"INIT", "PENDING", "SETTING_UP", "RUNNING"})
"""``sky.job_status`` states of a job that has not ended."""
STOPPED_JOB_STATES = frozenset({"CANCELLED"})
"""``sky.job_status`` states of a job that was cancelled."""


def submit(
    sdk: Any,
    cluster: ClusterRecord,
    handle: str,
    launch: LaunchRecord,
    trial_task: Callable[[LaunchSpec, TrialSlot], Any],
) -> str | None:
    """``handle`` takes its slot's GPUs on ``cluster`` and runs there with ``sky exec`` (the
    task ``trial_task`` builds for its slot): ``None`` once submitted (its job id and
    submission time recorded), else why not (the cluster's launch failed, or ``sky exec``)."""
    assert launch.slot is not None
    cluster.free_gpus -= launch.slot.workers
    cluster.trials.add(handle)
    if cluster.launch_error is not None:
        return cluster.launch_error
    try:
        task = trial_task(launch.spec, launch.slot)
        job_id, _ = sdk.get(sdk.exec(task, cluster_name=cluster.name))
    except Exception as exc:
        return (
            f"trial {launch.spec.trial_number} rung {launch.spec.rung}: sky exec on cluster "
            f"{cluster.name} failed: {type(exc).__name__}: {exc}"
        )
    launch.job_id = int(job_id)
    launch.submitted_at = time.monotonic()
    return None


def outcome(sdk: Any, launch: LaunchRecord, statuses: Any) -> tuple[LaunchState, str]:
    """What ``statuses`` (a ``sky.job_status`` answer) says of ``launch``'s job, and the
    message: ``RUNNING`` with its state, ``SUCCEEDED``, ``STOPPED`` once cancelled, else
    ``FAILED`` with the end of its log and the ``sky logs`` command."""
    assert launch.slot is not None and launch.job_id is not None
    state = statuses.get(launch.job_id)
    name = str(getattr(state, "value", state))
    if name in RUNNING_JOB_STATES:
        return LaunchState.RUNNING, name.lower()
    if name == "SUCCEEDED":
        return LaunchState.SUCCEEDED, "succeeded"
    if name in STOPPED_JOB_STATES:
        return LaunchState.STOPPED, "cancelled"
    cluster = launch.slot.cluster
    message = job_failure(
        trial=launch.spec.trial_number,
        rung=launch.spec.rung,
        cluster=cluster,
        job_id=launch.job_id,
        state=name,
        tail=log_tail(sdk, cluster, launch.job_id),
    )
    return LaunchState.FAILED, message


def cancel(sdk: Any, cluster: str, job_id: int) -> None:
    """``sky.cancel`` the job; a cluster that is gone has nothing left to cancel."""
    with contextlib.suppress(Exception):
        sdk.get(sdk.cancel(cluster, job_ids=[job_id]))


def release_slot(cluster: ClusterRecord, handle: str, launch: LaunchRecord) -> None:
    """``handle`` leaves ``cluster``: its GPUs are free, the time it held them is counted."""
    if handle not in cluster.trials or launch.slot is None:
        return
    cluster.trials.discard(handle)
    cluster.free_gpus += launch.slot.workers
    if launch.submitted_at is not None:
        held = time.monotonic() - launch.submitted_at
        cluster.busy_gpu_s += launch.slot.workers * held
        launch.submitted_at = None


def requeue(launch: LaunchRecord) -> None:
    """``launch``'s cluster vanished (spot preemption): it waits for a slot again, to be
    relaunched from its resume checkpoint."""
    launch.preemptions += 1
    launch.slot, launch.job_id = None, None
    launch.queued_at = time.monotonic()
