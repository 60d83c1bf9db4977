"""LocalBackend: trials as processes on this machine; ``k`` workers = a ``k``-process DDP run.

A slot is one GPU when the machine has GPUs, else one CPU worker process; by default there
are as many slots as the machine has (:func:`machine_slots`: every visible GPU, else the CPU
cores this process may use, at most 8). A launch with one worker runs
``python -m optuna_seer.worker.entrypoint TARGET``; with ``k > 1`` workers it runs the same under
``torchrun --nproc_per_node=k`` with its rendezvous on 127.0.0.1, so Lightning
(``strategy="ddp"``) or plain ``torch.distributed`` see a real world of size ``k``. Each launch
sees only its own GPUs (``CUDA_VISIBLE_DEVICES``, none on CPU slots), so DDP on one node uses
NCCL across a launch's GPUs and gloo across CPU processes (:attr:`LocalBackend.ddp_backend`).
Each launch is its own process group, so stopping it ends every worker.

Each launch also carries the driver's pid (``SEER_DRIVER_PID``): if the driver dies (even
by SIGKILL), every worker of every launch ends itself within moments, so no orphan keeps a
slot busy or trains beside the trial's relaunch after a resume
(:mod:`optuna_seer.worker.driver_watch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

from optuna_seer._machine import MAX_CPU_SLOTS as MAX_CPU_SLOTS
from optuna_seer._machine import cpu_slots as cpu_slots
from optuna_seer._ports import free_port
from optuna_seer._secrets import scrub, secret_values
from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.integration.clock import wall_time
from optuna_seer.worker.driver_watch import driver_env

_LOG_TAIL_CHARS = 2000


def visible_gpus() -> tuple[str, ...]:
    """The GPUs this process may use, named as a launch's ``CUDA_VISIBLE_DEVICES`` takes them.

    The count is torch's (``torch.cuda.device_count()``, which honours
    ``CUDA_VISIBLE_DEVICES``); the names are that many first entries of
    ``CUDA_VISIBLE_DEVICES`` when it is set (indices, ``GPU-...`` UUIDs or MIG ids), else
    ``0 .. n-1``, so the launch given slot ``i`` gets the GPU this process calls ``cuda:i``.
    ``()`` without CUDA or without torch.
    """
    try:
        import torch
    except ImportError:
        return ()
    count = int(torch.cuda.device_count())
    if count <= 0:
        return ()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return tuple(str(i) for i in range(count))
    names = [name.strip() for name in listed.split(",") if name.strip()]
    if len(names) < count:  # torch counted GPUs the variable does not name: trust torch
        return tuple(str(i) for i in range(count))
    return tuple(names[:count])


def machine_slots() -> int:
    """Worker slots this machine offers: one per visible GPU, else :func:`cpu_slots`.

    Example:
        >>> machine_slots() == (len(visible_gpus()) or cpu_slots())
        True
    """
    return len(visible_gpus()) or cpu_slots()


def gpu_name(index: int = 0) -> str:
    """The model of visible GPU ``index`` (``torch.cuda.get_device_name``), e.g.
    ``"NVIDIA H200"``."""
    import torch

    return str(torch.cuda.get_device_name(index))


def accelerator_name() -> str:
    """What this machine trains on: the first visible GPU's model, or ``"cpu"``."""
    return gpu_name(0) if visible_gpus() else "cpu"


@dataclass
class _Launch:
    spec: LaunchSpec
    process: subprocess.Popen[bytes]
    slots: tuple[int, ...]
    log_path: Path
    log: IO[bytes]
    started_at: float
    status: LaunchStatus | None = None
    stopped: bool = False
    copier: threading.Thread | None = None


class LocalBackend(Backend):
    """Run trials as local processes on ``slots`` workers.

    Args:
        slots: Workers that may run at once; by default one per GPU of ``gpus``, or
            :func:`cpu_slots` CPU processes when there is none. With GPUs, at most their number.
        gpus: The GPUs slots use, named as ``CUDA_VISIBLE_DEVICES`` names them (slot ``i``
            gets ``gpus[i]``); by default every visible one (:func:`visible_gpus`). ``()``:
            CPU processes, with GPUs hidden from launches, even on a GPU machine.
        log_dir: Where each launch's output goes (``trial-<n>-rung-<r>.log``); a temporary
            directory if ``None``.
        python: The interpreter for workers (this one by default).
        env: Extra environment variables for every launch.

    Example:
        >>> backend = LocalBackend(slots=2, gpus=())
        >>> backend.slots, backend.free_slots, backend.ddp_backend, backend.accelerator
        (2, 2, 'gloo', 'cpu')
        >>> LocalBackend().slots == machine_slots()
        True
    """

    def __init__(
        self,
        slots: int | None = None,
        *,
        gpus: Sequence[str] | None = None,
        log_dir: str | Path | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._gpus = visible_gpus() if gpus is None else _checked_gpus(gpus)
        if slots is None:
            slots = len(self._gpus) or cpu_slots()
        if isinstance(slots, bool) or not isinstance(slots, int):
            raise TypeError(f"slots={slots!r} must be an int.")
        if slots < 1:
            raise ValueError(f"slots={slots} must be >= 1.")
        if self._gpus and slots > len(self._gpus):
            raise ValueError(
                f"slots={slots} but this machine has {len(self._gpus)} GPUs "
                f"({','.join(self._gpus)}); use at most {len(self._gpus)} (leave slots out for "
                "one per GPU), or gpus=() for CPU processes."
            )
        self._slots = slots
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._python = python
        self._env = dict(env or {})
        for key, value in self._env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"env={{{key!r}: {value!r}}}: environment variables are strings, e.g. "
                    f"env={{'OMP_NUM_THREADS': '1'}}."
                )
        self._launches: dict[str, _Launch] = {}
        self._busy: set[int] = set()
        self._counter = 0

    @property
    def gpus(self) -> tuple[str, ...]:
        """The GPUs slots use (slot ``i``: ``gpus[i]``); ``()`` for CPU processes."""
        return self._gpus

    @property
    def ddp_backend(self) -> str:
        """The ``torch.distributed`` backend a multi-worker launch uses: ``"nccl"`` across
        its GPUs, ``"gloo"`` across CPU processes (Lightning's ``strategy="ddp"`` picks the
        same from the devices a launch sees)."""
        return "nccl" if self._gpus else "gloo"

    @property
    def accelerator(self) -> str:
        """What launches train on: the GPU model (``torch.cuda.get_device_name``) or
        ``"cpu"``; a profile measured here records it."""
        if not self._gpus:
            return "cpu"
        visible = visible_gpus()
        return gpu_name(visible.index(self._gpus[0]) if self._gpus[0] in visible else 0)

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def free_slots(self) -> int:
        """Slots not held by a running launch (polls the running ones first)."""
        for handle in list(self._launches):
            self.poll(handle)
        return self._slots - len(self._busy)

    @property
    def log_dir(self) -> Path:
        """Where launch logs go (a temporary directory, made at the first launch, if unset)."""
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="seer-local-"))
        return self._log_dir

    def slots_of(self, handle: str) -> tuple[int, ...]:
        """The slot indices a launch holds (held), for timelines."""
        return self._launch(handle).slots

    def log_path(self, handle: str) -> Path:
        return self._launch(handle).log_path

    def _launch(self, handle: str) -> _Launch:
        try:
            return self._launches[handle]
        except KeyError:
            raise ValueError(f"unknown launch handle {handle!r}") from None

    def command(self, spec: LaunchSpec) -> list[str]:
        """The command line a launch of ``spec`` runs."""
        run = ["-m", "optuna_seer.worker.entrypoint", spec.entrypoint]
        if spec.workers == 1:
            return [self._python, *run]
        return [
            self._python,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            f"--nproc_per_node={spec.workers}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            *run,
        ]

    def start(self, spec: LaunchSpec) -> str:
        if not spec.entrypoint:
            raise ValueError(
                f"trial {spec.trial_number}: LaunchSpec.entrypoint is empty; give the training "
                "script or function (ElasticTuner(train=...) sets it)."
            )
        if spec.workers > self._slots:
            raise ValueError(
                f"trial {spec.trial_number} wants {spec.workers} workers but LocalBackend has "
                f"{self._slots} slots."
            )
        free = sorted(set(range(self._slots)) - self._busy)
        if len(free) < spec.workers:
            raise RuntimeError(
                f"trial {spec.trial_number} wants {spec.workers} workers but only {len(free)} "
                "slots are free now; wait for a running launch to finish."
            )
        slots = tuple(free[: spec.workers])
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.update(self._env)
        env.update(spec.env)
        env.update(launch_env(spec))
        env.update(driver_env())
        # Only the launch's own GPUs, none for CPU slots (so Lightning picks cpu and gloo).
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpus[s] for s in slots if self._gpus)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        handle = f"local-{self._counter}-trial-{spec.trial_number}-rung-{spec.rung}"
        log_path = self.log_dir / f"trial-{spec.trial_number}-rung-{spec.rung}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the launch ends
        process = subprocess.Popen(
            self.command(spec),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        # The log on disk is scrubbed as it is written: a training script that prints a
        # token (or a traceback holding one) leaves none in the file (see optuna_seer._secrets).
        known = secret_values(env)
        copier = threading.Thread(
            target=_copy_scrubbed, args=(process.stdout, log, known), daemon=True
        )
        copier.start()
        self._busy.update(slots)
        self._launches[handle] = _Launch(
            spec, process, slots, log_path, log, self.now(), copier=copier
        )
        return handle

    def poll(self, handle: str) -> LaunchStatus:
        launch = self._launch(handle)
        if launch.status is not None:
            return launch.status
        code = launch.process.poll()
        if code is None:
            return LaunchStatus(LaunchState.RUNNING, launch.started_at)
        return self._finish(launch, code)

    def _finish(self, launch: _Launch, code: int) -> LaunchStatus:
        if launch.copier is not None:
            launch.copier.join(timeout=10.0)  # the rest of the output, scrubbed
        launch.log.close()
        self._busy.difference_update(launch.slots)
        if launch.stopped:
            state, message = LaunchState.STOPPED, "stopped"
        elif code == 0:
            state, message = LaunchState.SUCCEEDED, ""
        else:
            tail = launch.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
            state = LaunchState.FAILED
            message = f"exit code {code}; log {launch.log_path}; last output:\n{tail}"
        launch.status = LaunchStatus(state, launch.started_at, self.now(), message)
        return launch.status

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        launch = self._launch(handle)
        if launch.status is not None:
            return
        launch.stopped = True
        process = launch.process
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                process.wait()
        self._finish(launch, process.returncode)

    def release(self) -> None:
        for handle in list(self._launches):
            self.stop(handle)

    def now(self) -> float:
        return wall_time()  # the package's one wall clock (integration/clock.py)

    @property
    def launches_end_with_driver(self) -> bool:
        """``True``: every worker ends itself when the driver dies (``SEER_DRIVER_PID``)."""
        return True

    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            done = [h for h in handles if self.poll(h).done]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))


def _copy_scrubbed(source: IO[bytes] | None, log: IO[bytes], known: Iterable[str]) -> None:
    """Copy a launch's output to its log line by line, credentials masked."""
    if source is None:
        return
    with source:
        for line in iter(source.readline, b""):
            log.write(scrub(line.decode(errors="replace"), known).encode())
            log.flush()


def _checked_gpus(gpus: Sequence[str]) -> tuple[str, ...]:
    if isinstance(gpus, str) or not all(isinstance(g, str) and g.strip() for g in gpus):
        raise TypeError(f"gpus={gpus!r} must be a sequence of GPU names, e.g. ('0', '1') or ().")
    names = tuple(g.strip() for g in gpus)
    if len(set(names)) != len(names):
        raise ValueError(f"gpus={gpus!r} names a GPU twice; give each GPU once.")
    return names
