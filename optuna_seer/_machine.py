"""The workers this machine offers, found without importing torch.

The Optuna pair plans for these workers when it is given no ``limits``
(:func:`default_pool`); :mod:`optuna_seer.backends.local` counts GPUs through torch when it
launches (the two agree on an ordinary machine: the NVIDIA driver's GPUs, narrowed by
``CUDA_VISIBLE_DEVICES``). Importing torch here would put it on the pair's import path, which
the package's layering forbids (a CPU-only driver need not install it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import os
from pathlib import Path

MAX_CPU_SLOTS = 8
"""CPU slots :func:`cpu_slots` offers at most (each is a training process)."""
WORKERS_VARIABLE = "OPTUNA_SEER_WORKERS"
"""Overrides the pool the pair plans for: a count, or ``none`` for no cap (a cloud cluster
that grows with the plan). Set it alike on every machine of a study shared across machines."""
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def cpu_slots(cap: int = MAX_CPU_SLOTS) -> int:
    """CPU worker slots: the cores this process may run on (its affinity), between 1 and
    ``cap``."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, cap))


def gpu_count(environ: Mapping[str, str] | None = None, driver_dir: Path = _NVIDIA_GPUS) -> int:
    """NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES``'s entries up to the first
    invalid one (as CUDA reads it: ``""`` or ``-1`` hide every GPU) when it is set, else the
    GPUs the driver lists in ``driver_dir``; 0 without a driver. ``environ``: the process's
    environment unless given.

    Example:
        >>> gpu_count({"CUDA_VISIBLE_DEVICES": "0,1,-1,3"})
        2
        >>> gpu_count({"CUDA_VISIBLE_DEVICES": ""})
        0
    """
    listed = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        count = 0
        for name in listed.split(","):
            name = name.strip()
            if not name or name.startswith("-"):
                break
            count += 1
        return count
    try:
        return sum(1 for entry in driver_dir.iterdir() if entry.is_dir())
    except OSError:
        return 0


@dataclass(frozen=True)
class Pool:
    """The workers a plan may count on: ``size`` (``None``: no cap) and where that came from."""

    size: int | None
    source: str


def default_pool(environ: Mapping[str, str] | None = None) -> Pool:
    """The pool the pair plans for when given no ``limits``: ``OPTUNA_SEER_WORKERS`` if set,
    else one worker per visible GPU, else :func:`cpu_slots` CPU processes (``environ``: the
    process's environment unless given).

    Raises:
        ValueError: ``OPTUNA_SEER_WORKERS`` is neither a positive count nor ``none``.

    Example:
        >>> default_pool({"OPTUNA_SEER_WORKERS": "4"})
        Pool(size=4, source='OPTUNA_SEER_WORKERS=4')
        >>> default_pool({"OPTUNA_SEER_WORKERS": "none"}).size is None
        True
        >>> default_pool({"CUDA_VISIBLE_DEVICES": "2,3"})
        Pool(size=2, source='2 visible GPUs')
    """
    environ = os.environ if environ is None else environ
    value = environ.get(WORKERS_VARIABLE)
    if value is not None:
        text = value.strip().lower()
        if text == "none":
            return Pool(None, f"{WORKERS_VARIABLE}=none")
        if text.isdigit() and int(text) >= 1:
            return Pool(int(text), f"{WORKERS_VARIABLE}={int(text)}")
        raise ValueError(
            f"{WORKERS_VARIABLE}={value!r}: give the number of workers the plan may use "
            "(an integer >= 1) or 'none' for no cap."
        )
    gpus = gpu_count(environ)
    if gpus:
        return Pool(gpus, f"{gpus} visible GPU{'s' * (gpus != 1)}")
    slots = cpu_slots()
    return Pool(slots, f"{slots} CPU slot{'s' * (slots != 1)}: no GPU visible")
