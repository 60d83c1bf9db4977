"""Rung rules and plan shapes on the recorded curves, over many seeds, without the clock.

``run.py`` replays whole tuners on a simulated clock (about 10 s per seed and scenario); this
replays only SEER's rung decisions, on each scenario's plan as :func:`~optuna_seer.plan_seer`
computes it: the first ``n_0`` configurations of the seed's order train to each rung's end,
the top ``n_{r+1}`` by the rule survive, and the best finalist by the rule is scored by its
recorded test accuracy after all epochs. No straggler noise and no re-planning, so it
measures the decision rules alone, over hundreds of seeds in seconds.

Rules (validation accuracy only; the test accuracy only scores the selected model), each
applied at promotion (rungs that promote) and at the final selection (the last rung):

* ``number``: the rung-end value, ties to the lower trial number (SEER at first; Optuna's
  ``best_trial`` breaks ties the same way).
* ``ties``: the rung-end value, ties to the higher mean over the rung
  (:func:`optuna_seer.integration.ranking.rank_key`).
* ``mean``: the mean over the rung first, then the rung-end value.
* ``mean, loss``: ``mean``, then the lower validation loss at the rung end (the tie-break
  metric, :mod:`optuna_seer.integration.tie_break`), then the trial number
  (:func:`optuna_seer.integration.ranking.selection_key` when workers report the loss).
* ``loss``: the lower validation loss at the rung end first, then ``ties``
  (:func:`optuna_seer.integration.ranking.tie_break_rank_key`,
  ``SeerPruner(promote_by="tie_break")``).

SEER promotes by ``ties`` (by ``loss`` with ``promote_by="tie_break"``) and selects by
``mean, loss``. A second table asks the same question
without any tuner: over pairs of the data set's top configurations, how often does each
validation statistic order them as their test accuracy after all epochs does?

Two ablations of issue 17 follow (``--ablations``, on by default):

* **Curve-aware promotion** (:class:`~optuna_seer.planning.learning_curves.CurvePrior`,
  :func:`~optuna_seer.integration.ranking.curve_rank_key`): promote by the final value
  predicted from each curve so far, with a prior from the *other* data sets' curves, or from
  this data set's configurations the seed did not draw (a warm start from an earlier study);
  ``optimism`` 0 (the predicted mean) or 1 (mean + one standard deviation: keeps uncertain
  late bloomers). The selection stays SEER's.
* **Plan objective**: today's plan (the most configurations), the plan that holds at p95 of
  the scenario's stragglers (billed per launch, as the replay bills), and the plan an
  :class:`~optuna_seer.planning.accuracy_model.AccuracyModel` prefers with a prior from the
  other data sets (η = 3, and η chosen from 2-5), all with SEER's rules.

Usage::

    python benchmarks/rung_rules.py --seeds 200
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import itertools
import math
from pathlib import Path
import statistics
import sys

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``optuna_seer`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import curves as recorded
from benchmarks.baselines import Scenario, config_order
from benchmarks.curves import validation_values
from benchmarks.run import SCENARIOS
from optuna_seer.backends.replay import RecordedCurve
from optuna_seer.planning.accuracy_model import AccuracyModel
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.seer import plan_seer

RULES = {
    "number / number": ("number", "number"),
    "ties / number": ("ties", "number"),
    "number / ties": ("number", "ties"),
    "ties / ties": ("ties", "ties"),
    "ties / mean": ("ties", "mean"),
    "ties / mean, loss (SEER)": ("ties", "mean, loss"),
    "loss / mean, loss (SEER, promote_by='tie_break')": ("loss", "mean, loss"),
}
"""Column name (promotion / selection): (rule at promotion, rule at the final selection)."""

Array = npt.NDArray[np.float64]


def _loss_at(curve: RecordedCurve, epoch: int) -> float:
    """The validation loss after ``epoch``; ``inf`` (worst) where none was recorded."""
    loss = None if curve.val_loss is None else curve.val_loss[epoch - 1]
    return math.inf if loss is None else loss


RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "number": ("last", "number"),
    "ties": ("last", "mean", "number"),
    "mean": ("mean", "last", "number"),
    "mean, loss": ("mean", "last", "loss", "number"),
    "loss": ("loss", "last", "mean", "number"),
}
"""Each rule as its sort fields, most significant first (the module docstring says them in
words): ``last`` and ``mean`` higher first, ``loss`` and ``number`` lower first. One
definition for :func:`rule_key` (one curve) and :func:`rule_order` (curves in arrays)."""


def _fields(rule: str) -> tuple[str, ...]:
    if rule not in RULE_FIELDS:
        raise ValueError(f"rule={rule!r} is not a rung rule; valid: {sorted(RULE_FIELDS)}")
    return RULE_FIELDS[rule]


def rule_key(
    values: Sequence[float], since: int, end: int, number: int, rule: str, loss: float = math.inf
) -> tuple[float, ...]:
    """Best first under ``rule`` (:data:`RULE_FIELDS`) for a curve's validation ``values``
    over the rung from epoch ``since`` to ``end``; ``loss`` is the validation loss at ``end``
    (rules with ``loss`` only). A value that is not finite (a diverged run) counts as the worst, as
    SEER's ranking skips it.

    Example:
        >>> rule_key([0.5, 0.7, 0.7], 1, 3, 4, "ties")
        (-0.7, -0.7, 4)
        >>> rule_key([0.9, float("nan")], 0, 2, 1, "mean")  # diverged at its rung end
        (-0.9, inf, 1)
    """
    last = values[end - 1] if math.isfinite(values[end - 1]) else -math.inf
    finite = [v for v in values[since:end] if math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else -math.inf
    field = {"last": -last, "mean": -mean, "loss": loss, "number": number}
    return tuple(field[f] for f in _fields(rule))


def rule_order(last: Array, mean: Array, number: Array, rule: str) -> npt.NDArray[np.intp]:
    """:func:`rule_key`'s order along the last axis of arrays of rung-end values, rung means
    (NaN or infinite: worst, as there) and trial numbers: the indices, best first.

    Example:
        >>> last, mean = np.array([0.7, 0.7, 0.9]), np.array([0.6, 0.7, 0.5])
        >>> rule_order(last, mean, np.array([2, 3, 1]), "ties")  # 0.9 first, then mean 0.7
        array([2, 1, 0])
    """
    fields = _fields(rule)
    if "loss" in fields:
        raise ValueError(
            f"rule={rule!r}: the array form has no loss; valid: 'number', 'ties', 'mean'"
        )
    field = {
        "last": np.where(np.isfinite(last), -last, np.inf),
        "mean": np.where(np.isfinite(mean), -mean, np.inf),
        "number": np.broadcast_to(number, np.shape(last)).astype(float),
    }
    return np.lexsort(tuple(field[f] for f in reversed(fields)), axis=-1)


def _key(curve: RecordedCurve, since: int, end: int, number: int, rule: str) -> tuple[float, ...]:
    """:func:`rule_key` of a recorded curve."""
    loss = _loss_at(curve, end) if "loss" in _fields(rule) else math.inf
    return rule_key(validation_values(curve), since, end, number, rule, loss)


def select(
    curves: recorded.CurveSet,
    plan: Plan,
    seed: int,
    promote: str,
    final: str,
    prior: CurvePrior | None = None,
) -> int:
    """The configuration SEER's rung decisions select for ``seed`` under the rules; with
    ``prior``, promotions rank by its predicted final value instead of ``promote``."""
    order = config_order(len(curves.curves), seed)
    alive = list(range(plan.n_configs))  # trial numbers
    since = 0
    for rung in plan.rungs:
        last = rung.index == len(plan.rungs) - 1
        rule = final if last else promote

        def key(
            n: int,
            rule: str = rule,
            end: int = rung.resource,
            since: int = since,
            last: bool = last,
        ) -> tuple[float, ...]:
            curve = curves.curves[order[n]]
            if prior is None or last:
                return _key(curve, since, end, n, rule)
            score = prior.score(range(1, end + 1), curve.val_acc[:end], plan.max_epochs)
            return (-score, -curve.val_acc[end - 1], n)

        ranked = sorted(alive, key=key)
        if last:
            return order[ranked[0]]
        alive = ranked[: plan.rungs[rung.index + 1].n_trials]
        since = rung.resource
    raise AssertionError("a plan has at least one rung")


def mean_test(curves: recorded.CurveSet, plan: Plan, seeds: int, promote: str, final: str) -> float:
    return statistics.fmean(
        curves.curves[select(curves, plan, seed, promote, final)].test_acc[-1]
        for seed in range(seeds)
    )


def curve_aware_test(
    curves: recorded.CurveSet,
    plan: Plan,
    seeds: int,
    others: Sequence[recorded.CurveSet],
    optimism: float,
    warm: bool,
) -> float:
    """Mean test accuracy with curve-aware promotion: the prior is the other data sets'
    curves, or (``warm``) this data set's configurations outside the seed's first
    ``n_0``."""
    cross = CurvePrior([validation_values(c) for o in others for c in o.curves], optimism=optimism)
    picks = []
    for seed in range(seeds):
        prior = cross
        if warm:
            drawn = set(config_order(len(curves.curves), seed)[: plan.n_configs])
            rest = [validation_values(c) for i, c in enumerate(curves.curves) if i not in drawn]
            prior = CurvePrior(
                rest or [validation_values(c) for c in curves.curves], optimism=optimism
            )
        chosen = select(curves, plan, seed, "ties", "mean, loss", prior)
        picks.append(curves.curves[chosen].test_acc[-1])
    return statistics.fmean(picks)


def accuracy_prior(others: Sequence[recorded.CurveSet]) -> AccuracyModel:
    """The other data sets' curves, scored by their test accuracy after all epochs."""
    return AccuracyModel(
        [validation_values(c) for o in others for c in o.curves],
        scores=[c.test_acc[-1] for o in others for c in o.curves],
    )


def ablations(datasets: Sequence[str], directory: Path, seeds: int) -> None:
    """Print the curve-aware promotion and plan-objective tables (module docstring)."""
    sets = {d: recorded.load(d, directory) for d in datasets}
    print(f"\nCurve-aware promotion ({seeds} seeds; SEER's selection): mean test accuracy.\n")
    columns = ["SEER (rung-end value)"] + [
        f"curve, {'warm' if warm else 'other data sets'}, optimism {k:g}"
        for warm in (False, True)
        for k in (0.0, 1.0)
    ]
    print("| data set | scenario | " + " | ".join(columns) + " |")
    print("|---" * (2 + len(columns)) + "|")
    for dataset, curves in sets.items():
        others = [c for d, c in sets.items() if d != dataset]
        for scenario in SCENARIOS:
            plan = plan_for(scenario, curves, 1)
            scores = [mean_test(curves, plan, seeds, "ties", "mean, loss")] + [
                curve_aware_test(curves, plan, seeds, others, k, warm)
                for warm in (False, True)
                for k in (0.0, 1.0)
            ]
            print(
                f"| {dataset} | {scenario.name} | " + " | ".join(f"{c:.4f}" for c in scores) + " |"
            )
    print(f"\nPlan objective ({seeds} seeds; SEER's rules): plan and mean test accuracy.\n")
    print(
        "| data set | scenario | most configurations (today) | p95 of stragglers, per launch "
        "| accuracy model, η = 3 | accuracy model, η auto |"
    )
    print("|---" * 6 + "|")
    for dataset, curves in sets.items():
        model = accuracy_prior([c for d, c in sets.items() if d != dataset])
        for scenario in SCENARIOS:
            n = len(curves.curves)
            workload = scenario.workload(curves.epochs)
            plans = [
                plan_seer(scenario.budget, workload, 3, max_configs=n),
                plan_seer(
                    scenario.budget,
                    workload,
                    3,
                    epoch_cv=scenario.straggler_cv,
                    billing="per-launch",
                    max_configs=n,
                ),
                plan_seer(scenario.budget, workload, 3, accuracy=model, max_configs=n),
                plan_seer(scenario.budget, workload, "auto", accuracy=model, max_configs=n),
            ]
            cells = [
                f"{' '.join(f'{r.n_trials}×{r.resource}' for r in p.rungs)}: "
                f"{mean_test(curves, p, seeds, 'ties', 'mean, loss'):.4f}"
                for p in plans
            ]
            print(f"| {dataset} | {scenario.name} | " + " | ".join(cells) + " |")


STATISTICS: dict[str, Callable[[RecordedCurve, int], float]] = {
    "last value": lambda curve, since: curve.val_acc[-1],
    "mean over the last rung": lambda curve, since: statistics.fmean(curve.val_acc[since:]),
    "last validation loss": lambda curve, since: -_loss_at(curve, curve.epochs),
}
"""Validation statistics of a fully trained configuration, higher is better; ``since``: last
promoting rung end."""


def concordance(curves: recorded.CurveSet, top: int, since: int, statistic: str) -> float:
    """How often ``statistic`` picks the better (by test accuracy after all epochs) of two of
    the ``top`` configurations, over every such pair; a tie in ``statistic`` counts as a coin
    toss (0.5), pairs tied in test accuracy are left out. The ``top`` are those with the best
    mean validation accuracy over the last rung (epochs after ``since``)."""
    ranked = sorted(
        range(len(curves.curves)), key=lambda i: -statistics.fmean(curves.curves[i].val_acc[since:])
    )
    measure = STATISTICS[statistic]
    agree, total = 0.0, 0
    for a, b in itertools.combinations(ranked[:top], 2):
        ta, tb = curves.curves[a].test_acc[-1], curves.curves[b].test_acc[-1]
        if ta == tb:
            continue
        va, vb = (measure(curves.curves[i], since) for i in (a, b))
        total += 1
        agree += 0.5 if va == vb else float((ta > tb) == (va > vb))
    return agree / total if total else float("nan")


def plan_for(scenario: Scenario, curves: recorded.CurveSet, min_resource: int) -> Plan:
    return plan_seer(
        scenario.budget,
        scenario.workload(curves.epochs),
        scenario.reduction_factor,
        max_configs=len(curves.curves),
        min_resource=min_resource,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument(
        "--min-resources",
        type=int,
        nargs="+",
        default=[1, 4],
        help="plan_seer's min_resource: epochs before the first elimination (plan width)",
    )
    parser.add_argument(
        "--no-ablations",
        action="store_true",
        help="skip the curve-aware promotion and plan-objective tables",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds} must be >= 1.")
    datasets = recorded.available(args.curves)
    print(f"Mean test accuracy of the selected configuration over {args.seeds} seeds.\n")
    header = "| data set | scenario | plan (trials × rung-end epochs) | " + " | ".join(RULES)
    print(header + " |")
    print("|---" * (3 + len(RULES)) + "|")
    for dataset in datasets:
        curves = recorded.load(dataset, args.curves)
        for scenario in SCENARIOS:
            for min_resource in args.min_resources:
                plan = plan_for(scenario, curves, min_resource)
                shape = " ".join(f"{r.n_trials}×{r.resource}" for r in plan.rungs)
                cells = [
                    f"{mean_test(curves, plan, args.seeds, p, f):.4f}" for p, f in RULES.values()
                ]
                print(f"| {dataset} | {scenario.name} | {shape} | " + " | ".join(cells) + " |")
    since = plan_for(SCENARIOS[0], recorded.load(datasets[0], args.curves), 1).rungs[-2].resource
    print(
        "\nHow often each validation statistic picks the better (by test accuracy after 40 "
        f"epochs) of two of the top configurations (by the mean over epochs {since + 1}-40); "
        "ties in the statistic count as a coin toss (0.5).\n"
    )
    print("| data set | top | " + " | ".join(STATISTICS) + " |")
    print("|---" * (2 + len(STATISTICS)) + "|")
    for dataset in datasets:
        curves = recorded.load(dataset, args.curves)
        for top in (10, 20, 40):
            cells = [f"{concordance(curves, top, since, name):.2f}" for name in STATISTICS]
            print(f"| {dataset} | {top} | " + " | ".join(cells) + " |")
    if not args.no_ablations:
        ablations(datasets, args.curves, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
