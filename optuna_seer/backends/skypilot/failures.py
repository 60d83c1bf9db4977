"""Failure messages that say where to look: the cluster, the job, the end of its log, and the
``sky logs`` command that shows all of it.

A launch's message is kept in the trial's ``seer:launches`` record (its last 500 characters),
so the command to see more comes last.
"""

from __future__ import annotations

import io
from typing import Any

LOG_TAIL_LINES = 20
_TAIL_CHARS = 1500


def log_tail(sdk: Any, cluster: str, job_id: int, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of job ``job_id``'s log on ``cluster`` (``sky.tail_logs``
    without following), or a note saying why there is none."""
    stream = io.StringIO()
    try:
        sdk.tail_logs(cluster, job_id, follow=False, tail=lines, output_stream=stream)
    except Exception as exc:  # the cluster is gone, the API is down: say so, keep the rest
        return f"(no log tail: {type(exc).__name__}: {exc})"
    text = stream.getvalue().rstrip()
    return text[-_TAIL_CHARS:] if text else "(the job's log is empty)"


def job_failure(*, trial: int, rung: int, cluster: str, job_id: int, state: str, tail: str) -> str:
    """The message of a failed trial job.

    Example:
        >>> print(job_failure(trial=3, rung=1, cluster="seer-ab12cd-0", job_id=2,
        ...                   state="FAILED", tail="RuntimeError: CUDA out of memory"))
        trial 3 rung 1: job 2 on cluster seer-ab12cd-0 FAILED; its log ends:
        RuntimeError: CUDA out of memory
        see the whole log: sky logs seer-ab12cd-0 2
    """
    return (
        f"trial {trial} rung {rung}: job {job_id} on cluster {cluster} {state}; its log ends:\n"
        f"{tail}\nsee the whole log: {logs_command(cluster, job_id)}"
    )


def launch_failure(*, cluster: str, nodes: int, gpus_per_node: int, error: BaseException) -> str:
    """The message of trials whose cluster could not be launched.

    Example:
        >>> message = launch_failure(cluster="seer-ab12cd-1", nodes=2, gpus_per_node=8,
        ...                          error=RuntimeError("no capacity"))
        >>> print(message.replace("; ", ";" + chr(10)))
        launch of cluster seer-ab12cd-1 (2 node(s) x 8 GPUs) failed: RuntimeError: no capacity;
        see its provisioning log: sky logs --provision seer-ab12cd-1
    """
    return (
        f"launch of cluster {cluster} ({nodes} node(s) x {gpus_per_node} GPUs) failed: "
        f"{type(error).__name__}: {error}; see its provisioning log: "
        f"sky logs --provision {cluster}"
    )


def logs_command(cluster: str, job_id: int) -> str:
    """The command that shows a job's whole log.

    Example:
        >>> logs_command("seer-ab12cd-0", 2)
        'sky logs seer-ab12cd-0 2'
    """
    return f"sky logs {cluster} {job_id}"
