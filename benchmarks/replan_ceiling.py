"""How much re-planning the remaining rungs from the curves seen so far could buy.

Issue 17 asks the planner to re-plan as curves arrive. After rung 0 the width is spent; what
is left to choose is the shape of the remaining rungs: how many survivors, trained to which
epochs. This replays SEER's rung decisions on the recorded curves (as ``rung_rules.py`` does:
no clock, no stragglers), on each scenario's plan, with the remaining rungs replaced by
alternatives that cost no more GPU-epochs after rung 0 than the plan's (one worker each: a
budget proxy that ignores scaling, so the alternatives are if anything favoured):

* the plan's shape (today);
* **ceiling**: the one alternative with the best mean test accuracy over the seeds, chosen in
  hindsight (no run can know it; an upper bound on what re-planning the rest buys here);
* **conditional model**: per seed, the alternative with the highest expected final test
  accuracy when each survivor's curve is completed from the prior curves nearest its first
  rung (k nearest by RMS distance, shifted to its last value), with the prior either the
  other data sets' curves (``cross``) or this data set's configurations the seed did not draw
  (``warm``: what an earlier study of the same task would give).

Rules as SEER's: promotion by the rung-end value (ties to the higher mean over the rung),
selection by the mean over the last rung, exact ties to the lower trial number (SEER breaks
selection ties by the validation loss first, not replayed here); the selected configuration
scores its recorded test accuracy after all epochs.

Usage::

    python benchmarks/replan_ceiling.py --seeds 100                          # ~1 min
    python benchmarks/replan_ceiling.py --seeds 100 --curves benchmarks/curves/harder  # ~2 min
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import statistics
import sys
import warnings

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``optuna_seer`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import curves as recorded
from benchmarks.baselines import config_order
from benchmarks.curves import validation_values
from benchmarks.run import SCENARIOS
from benchmarks.rung_rules import plan_for, rule_key, rule_order
from optuna_seer.planning.accuracy_model import curve_epoch
from optuna_seer.planning.plan import Plan

Array = npt.NDArray[np.float64]
FRACTIONS = (1.0, 0.85, 0.7, 0.55, 0.4)
"""Final epochs of the alternatives, as fractions of ``max_epochs``."""
WIDENING = (1.0, 1.5, 2.0, 3.0)
"""Survivors per remaining rung of the alternatives, as multiples of the plan's."""


@dataclass(frozen=True)
class Shape:
    """The rungs after rung 0: survivors and cumulative epochs of each."""

    n: tuple[int, ...]
    ends: tuple[int, ...]

    def text(self) -> str:
        return " ".join(f"{a}x{e}" for a, e in zip(self.n, self.ends))


def _work(shape: Shape, start: int) -> int:
    """GPU-epochs (one worker per trial) the shape trains after epoch ``start``."""
    total, before = 0, start
    for n, end in zip(shape.n, shape.ends):
        total += n * (end - before)
        before = end
    return total


def shapes(plan: Plan) -> tuple[Shape, list[Shape]]:
    """The plan's shape after rung 0, and every alternative costing no more GPU-epochs."""
    rest = plan.rungs[1:]
    start = plan.rungs[0].resource
    today = Shape(tuple(r.n_trials for r in rest), tuple(r.resource for r in rest))
    budget = _work(today, start)
    found = {today}
    for fraction in FRACTIONS:
        final = max(round(plan.max_epochs * fraction), start + len(rest))
        ends = [
            max(start + i + 1, round(start * (final / start) ** ((i + 1) / len(rest))))
            for i in range(len(rest))
        ]
        ends[-1] = final
        for widen in WIDENING:
            n = tuple(min(max(1, round(a * widen)), plan.rungs[0].n_trials) for a in today.n)
            shape = Shape(n, tuple(ends))
            if list(n) == sorted(n, reverse=True) and _work(shape, start) <= budget:
                found.add(shape)
    return today, sorted(found, key=lambda s: (s.ends, s.n))


def select(values: dict[int, Array], ranked: Sequence[int], start: int, shape: Shape) -> int:
    """SEER's rules (:func:`~benchmarks.rung_rules.rule_key`: promotion by ``ties``,
    selection by ``mean``, exact ties to the lower trial number, the keys of ``values``)
    over the remaining rungs from the rung-0 ranking ``ranked``."""
    alive, since = list(ranked[: shape.n[0]]), start
    for i, end in enumerate(shape.ends):
        last = i == len(shape.ends) - 1
        rule = "mean" if last else "ties"
        alive.sort(key=lambda a: rule_key(values[a], since, end, a, rule))
        if last:
            return alive[0]
        alive, since = alive[: shape.n[i + 1]], end
    raise AssertionError("a shape has at least one rung")


def model_choice(
    seen: dict[int, Array],
    ranked: Sequence[int],
    start: int,
    options: Sequence[Shape],
    prior: tuple[Array, Array],
    rng: np.random.Generator,
    draws: int = 60,
    k: int = 8,
) -> Shape:
    """The option with the highest expected test accuracy when survivors' curves are
    completed from their ``k`` nearest prior curves (shifted to their last seen value),
    ranked in each draw by :func:`select`'s rules
    (:func:`~benchmarks.rung_rules.rule_order`)."""
    curves, tests = prior
    k = min(k, len(curves))
    best, best_value = options[0], -np.inf
    for shape in options:
        ids = list(ranked[: shape.n[0]])
        head = np.array([seen[a][:start] for a in ids])
        distance = np.sqrt(np.nanmean((curves[None, :, :start] - head[:, None, :]) ** 2, axis=2))
        near = np.argsort(np.where(np.isnan(distance), np.inf, distance), axis=1)[:, :k]
        drawn = near[np.arange(len(ids)), rng.integers(k, size=(draws, len(ids)))]
        shift = head[:, -1] - curves[drawn, start - 1]  # (draws, survivors)
        completed = curves[drawn] + shift[..., None]
        score = tests[drawn] + shift
        alive = np.broadcast_to(np.arange(len(ids)), (draws, len(ids)))
        numbers = np.asarray(ids)
        since = start
        for i, end in enumerate(shape.ends):
            window = np.take_along_axis(completed, alive[..., None], axis=1)
            last, mean = window[:, :, end - 1], np.nanmean(window[:, :, since:end], axis=2)
            final = i == len(shape.ends) - 1
            order = rule_order(last, mean, numbers[alive], "mean" if final else "ties")
            alive = np.take_along_axis(alive, order[:, : 1 if final else shape.n[i + 1]], axis=1)
            since = end
        value = float(np.take_along_axis(score, alive, axis=1).mean())
        if value > best_value:
            best, best_value = shape, value
    return best


def _on_epochs(curves: Array, epochs: int) -> Array:
    """Prior curves mapped onto ``epochs`` by the same fraction of training."""
    have = curves.shape[1]
    return curves[:, [curve_epoch(e, epochs, have) - 1 for e in range(1, epochs + 1)]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument("--datasets", nargs="+", default=None)
    args = parser.parse_args(argv)
    # A diverged configuration's window has no finite value: its mean is NaN, ranked last.
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    names = args.datasets or sorted(p.name.split(".")[0] for p in args.curves.glob("*.json.gz"))
    sets = {d: recorded.load(d, args.curves) for d in names}
    print(
        f"Remaining rungs re-planned after rung 0 ({args.seeds} seeds; SEER's rules): mean "
        "test accuracy.\n\n| data set | scenario | today | ceiling (hindsight shape) | "
        "conditional model, cross | conditional model, warm |\n|---|---|---|---|---|---|"
    )
    for dataset, curve_set in sets.items():
        values = [np.array(validation_values(c)) for c in curve_set.curves]
        tests = np.array([c.test_acc[-1] for c in curve_set.curves])
        cross_sets = [c for d, c in sets.items() if d != dataset] or [curve_set]
        cross = (
            _on_epochs(
                np.array([validation_values(c) for o in cross_sets for c in o.curves]),
                curve_set.epochs,
            ),
            np.array([c.test_acc[-1] for o in cross_sets for c in o.curves]),
        )
        for scenario in SCENARIOS:
            plan = plan_for(scenario, curve_set, 1)
            today, options = shapes(plan)
            start = plan.rungs[0].resource
            scores: dict[Shape, list[float]] = {s: [] for s in options}
            chosen: dict[str, list[float]] = {"cross": [], "warm": []}
            rng = np.random.default_rng(0)
            for seed in range(args.seeds):
                order = config_order(len(curve_set.curves), seed)
                seen = {a: values[order[a]] for a in range(plan.n_configs)}
                ranked = sorted(seen, key=lambda a: (-seen[a][start - 1], a))
                for shape in options:
                    scores[shape].append(float(tests[order[select(seen, ranked, start, shape)]]))
                undrawn = list(order[plan.n_configs :]) or list(order)
                warm = (np.array([values[i] for i in undrawn]), tests[undrawn])
                for name, prior in (("cross", cross), ("warm", warm)):
                    pick = model_choice(seen, ranked, start, options, prior, rng)
                    chosen[name].append(float(tests[order[select(seen, ranked, start, pick)]]))
            means = {s: statistics.fmean(v) for s, v in scores.items()}
            ceiling = max(means, key=lambda s: means[s])
            print(
                f"| {dataset} | {scenario.name} | {today.text()}: {means[today]:.4f} | "
                f"{ceiling.text()}: {means[ceiling]:.4f} | {statistics.fmean(chosen['cross']):.4f}"
                f" | {statistics.fmean(chosen['warm']):.4f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
