"""The workers ``study.optimize`` trials lease (:func:`optuna_seer.rungs`): a named pool of
GPU slots, or of CPU processes on a machine without GPUs."""

from __future__ import annotations

from dataclasses import dataclass
import socket

from optuna_seer.backends.local import cpu_slots, visible_gpus


@dataclass(frozen=True)
class WorkerPool:
    """The workers trials lease: ``size`` slots named ``name`` (one per GPU of ``gpus``, or
    CPU processes when ``gpus`` is empty).

    Example:
        >>> WorkerPool.of_machine(size=2, gpus=()).size
        2
    """

    name: str
    size: int
    gpus: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"pool size={self.size!r} must be a positive int.")
        if self.gpus and self.size > len(self.gpus):
            raise ValueError(
                f"pool size={self.size} but {len(self.gpus)} GPUs ({','.join(self.gpus)}); "
                "use at most one slot per GPU, or gpus=() for CPU processes."
            )

    @classmethod
    def of_machine(
        cls, size: int | None = None, gpus: tuple[str, ...] | None = None, name: str | None = None
    ) -> WorkerPool:
        """This machine's pool: every visible GPU, else :func:`cpu_slots` CPU processes."""
        gpus = visible_gpus() if gpus is None else tuple(gpus)
        return cls(
            name=name or socket.gethostname(),
            size=size if size is not None else (len(gpus) or cpu_slots()),
            gpus=gpus,
        )

    def gpus_of(self, slots: tuple[int, ...]) -> tuple[str, ...]:
        """The GPUs of leased ``slots`` (``()`` on a CPU pool)."""
        return tuple(self.gpus[s] for s in slots) if self.gpus else ()
