"""Local workers die with their driver: a launch must not outlive the process that started it.

``LocalBackend`` starts every launch in a session of its own (so that stopping a launch
ends all of it), and ``torchrun`` starts each rank in a session of its own as well. Nothing
therefore ends a launch when the driver is SIGKILLed: its workers would keep the slots busy
and, once the study is resumed, train the same trial beside its relaunch and race it for
the same checkpoint.

Design. The backend puts its own pid and start time in each launch's environment
(``SEER_DRIVER_PID``, ``SEER_DRIVER_STARTED``; :func:`driver_env`). Every process that runs
``optuna_seer.worker.entrypoint`` (the single worker, or each ``torchrun`` rank) calls
:func:`watch_driver` before it imports the training code: a daemon thread blocks on a
pidfd of the driver (Linux >= 5.3; elsewhere it polls every half second) and, the moment the
driver is gone, SIGKILLs

1. the ``torchrun`` agent that started this rank (through a pidfd opened at start-up, so a
   reused pid is never hit), so it cannot restart the ranks, and
2. this process's own process group (the rank and its DataLoader workers), if it leads one;
   otherwise just this process.

The start time guards against pid reuse: a process under the driver's pid that started at
another time is not the driver. ``PR_SET_PDEATHSIG`` was not used: it fires when the
*thread* that forked exits, reaches only the direct child (not ``torchrun``'s ranks) and
needs a ``preexec_fn``, which is unsafe in a threaded driver.

What a kill leaves behind: checkpoints are stored under a temporary name and renamed (a
local store) or with their digest written last (S3), so the last good checkpoint is never
replaced by a partial one; an intermediate value is one storage transaction, so none is
half-written. Launches on other machines (SkyPilot) do not get these variables: their
clusters end by autostop instead.

Example:
    >>> sorted(driver_env())  # doctest: +SKIP
    ['SEER_DRIVER_PID', 'SEER_DRIVER_STARTED']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import contextlib
import os
from pathlib import Path
import select
import signal
import threading
import time

ENV_DRIVER_PID = "SEER_DRIVER_PID"
ENV_DRIVER_STARTED = "SEER_DRIVER_STARTED"
_POLL_S = 0.5


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or
    ``None`` if it does not exist, is a zombie, or there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # fields 3.. (the name may hold spaces)
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def driver_env() -> dict[str, str]:
    """The variables that make a launch's workers die with this process (the driver)."""
    env = {ENV_DRIVER_PID: str(os.getpid())}
    ticks = process_start_ticks(os.getpid())
    if ticks is not None:
        env[ENV_DRIVER_STARTED] = str(ticks)
    return env


def _alive(pid: int, ticks: int | None) -> bool:
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    started = process_start_ticks(pid)
    return started is not None and (ticks is None or started == ticks)


def _pidfd(pid: int) -> int | None:
    opener: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:  # gone already, or pidfds unsupported by this kernel
        return None


def _end_launch(launcher_fd: int | None) -> None:
    """SIGKILL the torchrun agent (if any), then this process's group (or this process)."""
    send: Callable[[int, int], None] | None = getattr(signal, "pidfd_send_signal", None)
    if launcher_fd is not None and send is not None:
        with contextlib.suppress(OSError):  # the agent is gone already
            send(launcher_fd, signal.SIGKILL)
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def watch_driver(
    environ: Mapping[str, str] | None = None,
    *,
    on_gone: Callable[[], None] | None = None,
    poll_s: float = _POLL_S,
) -> threading.Thread | None:
    """Start the watchdog that ends this launch when its driver dies (see the module doc).

    Args:
        environ: Where to read ``SEER_DRIVER_PID``/``SEER_DRIVER_STARTED`` (``os.environ``).
        on_gone: What to do when the driver is gone; SIGKILL this launch by default.
        poll_s: Poll period where pidfds are not available.

    Returns:
        The daemon thread, or ``None`` when no driver is named (started by hand).

    Raises:
        RuntimeError: ``SEER_DRIVER_PID`` or ``SEER_DRIVER_STARTED`` is not a whole number.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_DRIVER_PID)
    if not raw:
        return None
    values: list[int | None] = []
    for name, value in ((ENV_DRIVER_PID, raw), (ENV_DRIVER_STARTED, env.get(ENV_DRIVER_STARTED))):
        try:
            values.append(None if value is None else int(value))
        except ValueError:
            raise RuntimeError(f"{name}={value!r} is not a whole number.") from None
    pid, ticks = values
    assert pid is not None
    parent = os.getppid()
    launcher_fd: int | None = None
    if "TORCHELASTIC_RUN_ID" in env and parent not in (pid, 1):
        # A torchrun rank: the agent above it is part of this launch too.
        launcher_fd = _pidfd(parent)
    driver_fd = _pidfd(pid)
    gone = on_gone if on_gone is not None else (lambda: _end_launch(launcher_fd))

    def watch() -> None:
        if driver_fd is not None and _alive(pid, ticks):
            waiter = select.poll()
            waiter.register(driver_fd, select.POLLIN)
            while not waiter.poll():  # readable once the driver has exited
                pass
        else:
            while _alive(pid, ticks):
                time.sleep(poll_s)
        gone()

    thread = threading.Thread(target=watch, name="seer-driver-watch", daemon=True)
    thread.start()
    return thread
