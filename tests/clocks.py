"""A clock the tests move by hand (SEER's pruner and sampler take any callable returning
seconds)."""

from __future__ import annotations


class SimulatedClock:
    """Seconds since the epoch, moved by setting or adding to :attr:`now`."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now
