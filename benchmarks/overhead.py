"""Overhead of SEER's pruner and sampler against Optuna's SuccessiveHalvingPruner.

Both run on the same SQLite storage, in a study pre-filled with N finished trials that carry
each pruner's own rung records, so every ``should_prune`` ranks against N competitors. For each
pruner, K new trials are asked (sampler + placement), report 9 epochs and call
``should_prune`` after each one, alternating between the two studies. Prints the median
milliseconds per call and the SEER/SHA ratio, then the planner's time for 1,000
configurations on 64 GPUs.

    python benchmarks/overhead.py            # N = 1,000 and 10,000 (pre-filling takes minutes)
    python benchmarks/overhead.py --sizes 1000 --probe 10
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import statistics
import tempfile
import time

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_seer import Budget, ClusterLimits, Plan, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer.cost_model import RungShape, schedule
from optuna_seer.trial_attrs import TRIAL_PLACEMENT, placement, rung_value_key

EPOCHS = 9


def seer_pruner(width: int) -> SeerPruner:
    """SEER with the same rungs as the SHA baseline: ends at epochs 1, 3, 9, keeping 1/3.

    (Left to itself, with an unlimited budget the planner would train every configuration
    fully and never prune, which would not be the same run.)
    """
    workload = Workload(epoch_seconds=60, scaling="amdahl:0.95", max_epochs=EPOCHS)
    shapes = [RungShape(math.ceil(width / 3**r), 3**r, 1) for r in range(3)]
    rungs = schedule(shapes, workload, 3.0 / 3600, ClusterLimits())
    plan = Plan(
        rungs=rungs,
        reduction_factor=3,
        deadline_s=1e9,
        budget_dollars=1e9,
        price_per_gpu_second=3.0 / 3600,
        min_marginal_speedup=0.2,
    )
    return SeerPruner(plan=plan)


def prefill(study: optuna.Study, n: int, kind: str, pruner: SeerPruner | None) -> None:
    """N finished trials with 9 reports each and the pruner's own rung bookkeeping."""
    for number in range(n):
        quality = (number * 7919 % 1000) / 1000
        values = {e: quality * e / EPOCHS for e in range(1, EPOCHS + 1)}
        attrs: dict[str, object] = {}
        if kind == "sha":
            attrs = {f"completed_rung_{r}": values[3**r] for r in range(2)}
        else:
            assert pruner is not None
            plan = pruner.plan
            attrs = {rung_value_key(r.index): values[r.resource] for r in plan.rungs[:-1]}
            attrs[TRIAL_PLACEMENT] = placement(
                [r.gpus_per_trial for r in plan.rungs], [r.resource for r in plan.rungs], 0.0
            )
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=values[EPOCHS],
                params={"x": quality},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values=values,
                system_attrs=attrs,
            )
        )


def probe_one(study: optuna.Study, index: int) -> tuple[float, list[float], float]:
    """Seconds to ask + suggest one fresh trial, for each of its ``should_prune`` calls, and
    for the whole trial (ask, suggest, reports, pruning checks, tell)."""
    begin = start = time.perf_counter()
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    ask = time.perf_counter() - start
    prunes: list[float] = []
    state = TrialState.COMPLETE
    for epoch in range(1, EPOCHS + 1):
        trial.report(x * epoch / EPOCHS + index * 1e-9, epoch)
        start = time.perf_counter()
        pruned = trial.should_prune()
        prunes.append(time.perf_counter() - start)
        if pruned:
            state = TrialState.PRUNED
            break
    study.tell(trial, x if state == TrialState.COMPLETE else None, state=state)
    return ask, prunes, time.perf_counter() - begin


def measure(n: int, k: int, directory: Path) -> dict[str, tuple[float, float, float]]:
    """Median ms per ask, per should_prune and per trial, SHA and SEER probed alternately.

    Alternating (and swapping who goes first) keeps a busy machine from favouring one side.
    """
    studies: dict[str, optuna.Study] = {}
    for kind in ("sha", "seer"):
        storage = f"sqlite:///{directory / f'{kind}-{n}.db'}"
        seer = seer_pruner(width=n + k + 10) if kind == "seer" else None
        pruner: optuna.pruners.BasePruner = seer or optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        )
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=0)
        if seer is not None:
            sampler = SeerSampler(sampler)
        study = optuna.create_study(
            storage=storage, direction="maximize", pruner=pruner, sampler=sampler
        )
        started = time.perf_counter()
        prefill(study, n, kind, seer)
        print(
            f"  pre-filled {n} trials for {kind} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        studies[kind] = study
    asks: dict[str, list[float]] = {"sha": [], "seer": []}
    prunes: dict[str, list[float]] = {"sha": [], "seer": []}
    whole: dict[str, list[float]] = {"sha": [], "seer": []}
    for index in range(k):
        order = ("sha", "seer") if index % 2 == 0 else ("seer", "sha")
        for kind in order:
            ask, calls, trial_s = probe_one(studies[kind], index)
            asks[kind].append(ask)
            prunes[kind].extend(calls)
            whole[kind].append(trial_s)
    return {
        kind: (
            1000 * statistics.median(asks[kind]),
            1000 * statistics.median(prunes[kind]),
            1000 * statistics.median(whole[kind]),
        )
        for kind in ("sha", "seer")
    }


def planning_times() -> list[tuple[str, float, int]]:
    rows = []
    for scaling in ("linear", "amdahl:0.95", "power:0.6", "imagenet-resnet50"):
        budget = Budget(deadline="8h", dollars=5000, price_per_gpu_hour=3.0)
        workload = Workload(epoch_seconds=600, scaling=scaling, max_epochs=81)
        start = time.perf_counter()
        plan = plan_seer(budget, workload, 3, limits=ClusterLimits(max_gpus=64), max_configs=1000)
        rows.append((scaling, time.perf_counter() - start, plan.n_configs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--probe", type=int, default=20, help="fresh trials timed per size")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("overhead on SQLite (median ms per call over the probe trials)")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for n in args.sizes:
            result = measure(n, args.probe, Path(directory))
            rows.append((n, result))
    print(
        f"\n{'trials':>7} | {'ask+suggest SHA':>15} {'SEER':>7} {'ratio':>5} | "
        f"{'should_prune SHA':>16} {'SEER':>6} {'ratio':>5} | "
        f"{'whole trial SHA':>15} {'SEER':>7} {'ratio':>5}"
    )
    for n, result in rows:
        sha, seer = result["sha"], result["seer"]
        print(
            f"{n:>7} | {sha[0]:>15.2f} {seer[0]:>7.2f} {seer[0] / sha[0]:>5.2f} | "
            f"{sha[1]:>16.2f} {seer[1]:>6.2f} {seer[1] / sha[1]:>5.2f} | "
            f"{sha[2]:>15.2f} {seer[2]:>7.2f} {seer[2] / sha[2]:>5.2f}"
        )
    print("\nplanning 1,000 configurations on at most 64 GPUs (81 epochs, eta 3)")
    for scaling, seconds, width in planning_times():
        print(f"  {scaling:<18} {1000 * seconds:7.1f} ms  -> {width} configurations")


if __name__ == "__main__":
    main()
