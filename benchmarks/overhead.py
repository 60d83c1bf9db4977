"""Overhead of SEER's pruner and sampler against Optuna's SuccessiveHalvingPruner.

Both run on the same SQLite storage, with the same rungs (ends at epochs 1, 3, 9, keeping a
third), in a study pre-filled with N finished trials as each pruner would have left them
(pruned where it pruned them, with its own system attrs), so every ``should_prune`` at a rung
end ranks against the N trials. For each pruner, K new trials are asked (sampler +
placement), report up to 9 epochs and call ``should_prune`` after each one, alternating
between the two studies, in R rounds. Prints, per N, the median milliseconds per call and the
SEER/SHA ratio (the median over rounds, and the lowest and highest round), then the
planner's time for 1,000 configurations on 64 GPUs.

    python benchmarks/overhead.py                      # N = 1,000 and 10,000; K = 30, R = 3
    python benchmarks/overhead.py --sizes 1000 --probe 10 --rounds 1
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import json
import math
from pathlib import Path
import statistics
import tempfile
import time
from typing import Any

import optuna
from optuna.distributions import FloatDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import func, insert, select

from optuna_seer import Budget, ClusterLimits, Plan, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer.integration.keys import (
    STUDY_IMPLICIT_PLACEMENT,
    STUDY_PLAN,
    TRIAL_LEDGER,
    rung_end,
    rung_end_key,
)
from optuna_seer.integration.ledger import start_clock
from optuna_seer.integration.trial_gpus import ImplicitPlacement
from optuna_seer.planning.cost_model import RungShape, schedule

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


def sha_history(n: int) -> list[FrozenTrial]:
    """N finished trials as SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) leaves
    them: a trial reports epochs until a rung end (1, 3, 9) where it is not in the top third
    of the values seen there, and holds one ``completed_rung_<r>`` per rung end it reached."""
    seen: list[list[float]] = [[] for _ in range(3)]
    trials = []
    for number in range(n):
        quality = (number * 7919 % 1000) / 1000
        attrs: dict[str, Any] = {}
        state, last = TrialState.COMPLETE, EPOCHS
        for rung in range(3):
            value = quality * 3**rung / EPOCHS
            attrs[f"completed_rung_{rung}"] = value
            bisect.insort(seen[rung], value)
            beaten_by = len(seen[rung]) - bisect.bisect_right(seen[rung], value)
            if beaten_by > max(len(seen[rung]) // 3 - 1, 0):
                state, last = TrialState.PRUNED, 3**rung
                break
        trials.append(_finished(number, quality, state, last, attrs))
    return trials


def seer_history(n: int, plan: Plan, started_at: float) -> list[FrozenTrial]:
    """N finished trials as SeerSampler and SeerPruner (asynchronous mode on the wall clock,
    1 GPU per trial, 1 s per epoch, a trial placed every 10 s) leave them: placed implicitly
    (no attr of their own, see :mod:`optuna_seer.integration.trial_gpus`), one rung-end record
    per rung end reached (value, mean over the rung, settled cost, why it stopped there), and
    for finalists the cost settled when they completed."""
    rungs = plan.rungs
    seen: list[list[float]] = [[] for _ in rungs]
    trials = []
    for number in range(n):
        quality = (number * 7919 % 1000) / 1000
        placed_at = started_at + 10.0 * number
        attrs: dict[str, Any] = {}
        state, last = TrialState.COMPLETE, EPOCHS
        for rung in rungs:
            value = quality * rung.resource / EPOCHS
            stop = None
            if rung.index < len(rungs) - 1:
                bisect.insort(seen[rung.index], value)
                entries = seen[rung.index]
                beaten_by = len(entries) - bisect.bisect_right(entries, value)
                keep = rungs[rung.index + 1].n_trials
                if beaten_by >= max(len(entries) * keep // rung.n_trials, 1):
                    stop = f"rung {rung.index}: not in the top {keep}/{rung.n_trials}"
            for earlier in rungs[: min(rung.index + 1, len(rungs) - 1)]:
                own = quality * earlier.resource / EPOCHS
                entries = seen[earlier.index]
                beaten_by = len(entries) - bisect.bisect_right(entries, own)
                keep = rungs[earlier.index + 1].n_trials
                if stop is None and beaten_by >= keep:
                    stop = f"rung {earlier.index}: displaced"
            if stop is not None or rung.index < len(rungs) - 1:
                gpu_seconds = float(rung.resource * rung.gpus_per_trial)
                since = plan.epochs_before(rung.index)
                mean = quality * (since + 1 + rung.resource) / 2 / EPOCHS  # values rise linearly
                attrs[rung_end_key(rung.index)] = rung_end(
                    value, mean, gpu_seconds, placed_at + rung.resource, stop
                )
            if stop is not None:
                state, last = TrialState.PRUNED, rung.resource
                break
        if state == TrialState.COMPLETE:
            attrs[TRIAL_LEDGER] = [float(EPOCHS), placed_at + EPOCHS]
        trials.append(_finished(number, quality, state, last, attrs))
    return trials


def _finished(
    number: int, quality: float, state: TrialState, last: int, attrs: dict[str, Any]
) -> FrozenTrial:
    values = {e: quality * e / EPOCHS for e in range(1, last + 1)}
    return create_trial(
        state=state,
        value=values[last] if state == TrialState.COMPLETE else None,
        params={"x": quality},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values=values,
        system_attrs=attrs,
    )


def insert_trials(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """``study.add_trials(trials)`` for an RDB storage, in one transaction instead of one per
    trial (which took minutes for 10,000 trials): the same rows, through Optuna's own table
    definitions. The study must be empty."""
    backend = study._storage
    backend = getattr(backend, "_backend", backend)  # Optuna caches RDB storages
    if not isinstance(backend, RDBStorage):
        raise TypeError(f"insert_trials writes RDB storages; got {backend!r}.")
    if study.get_trials(deepcopy=False):
        raise ValueError(f"study {study.study_name!r} must be empty to pre-fill.")
    with backend.engine.begin() as connection:
        first_id = (
            connection.execute(
                select(func.coalesce(func.max(models.TrialModel.trial_id), 0))
            ).scalar_one()
            + 1
        )
        rows: dict[str, list[dict[str, Any]]] = {
            "trials": [],
            "values": [],
            "params": [],
            "attrs": [],
            "intermediate": [],
        }
        for number, trial in enumerate(trials):
            trial_id = first_id + number
            rows["trials"].append(
                {
                    "trial_id": trial_id,
                    "number": number,
                    "study_id": study._study_id,
                    "state": trial.state,
                    "datetime_start": _utc(trial.datetime_start),
                    "datetime_complete": _utc(trial.datetime_complete),
                }
            )
            if trial.value is not None:
                value, kind = models.TrialValueModel.value_to_stored_repr(trial.value)
                rows["values"].append(
                    {"trial_id": trial_id, "objective": 0, "value": value, "value_type": kind}
                )
            for name, param in trial.params.items():
                distribution = trial.distributions[name]
                rows["params"].append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": distribution.to_internal_repr(param),
                        "distribution_json": distribution_to_json(distribution),
                    }
                )
            for key, attr in trial.system_attrs.items():
                rows["attrs"].append(
                    {"trial_id": trial_id, "key": key, "value_json": json.dumps(attr)}
                )
            intermediate = models.TrialIntermediateValueModel
            for step, reported in trial.intermediate_values.items():
                stored, stored_kind = intermediate.intermediate_value_to_stored_repr(reported)
                rows["intermediate"].append(
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": stored,
                        "intermediate_value_type": stored_kind,
                    }
                )
        tables = {
            "trials": models.TrialModel,
            "values": models.TrialValueModel,
            "params": models.TrialParamModel,
            "attrs": models.TrialSystemAttributeModel,
            "intermediate": models.TrialIntermediateValueModel,
        }
        for name, model in tables.items():
            if rows[name]:
                connection.execute(insert(model.__table__), rows[name])


def _utc(moment: datetime.datetime | None) -> datetime.datetime | None:
    """Naive UTC, as Optuna's RDB storage keeps datetimes."""
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def prefill(study: optuna.Study, n: int, kind: str, pruner: SeerPruner | None) -> None:
    """N finished trials with the pruner's own records, as if the study had run that far."""
    if kind == "sha":
        insert_trials(study, sha_history(n))
    else:
        assert pruner is not None
        started_at = time.time() - 10.0 * n - 60.0
        insert_trials(study, seer_history(n, pruner.plan, started_at))
        plan = pruner.plan
        study._storage.set_study_system_attr(study._study_id, STUDY_PLAN, plan.to_dict())
        study._storage.set_study_system_attr(
            study._study_id, STUDY_IMPLICIT_PLACEMENT, ImplicitPlacement.for_plan(plan).to_dict()
        )
        start_clock(study, started_at)
    study.get_trials(deepcopy=False)  # a running worker has the finished trials cached


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


Timings = dict[str, tuple[float, float, float]]
"""Per pruner (``"sha"``, ``"seer"``): median ms per ask+suggest, per should_prune, per trial."""


def measure(n: int, k: int, rounds: int, directory: Path) -> list[Timings]:
    """``rounds`` rounds of K probe trials per pruner on studies pre-filled with N trials;
    each round's medians. SHA and SEER are probed alternately (and swap who goes first), so a
    busy machine favours neither side."""
    studies: dict[str, optuna.Study] = {}
    for kind in ("sha", "seer"):
        storage = f"sqlite:///{directory / f'{kind}-{n}.db'}"
        seer = seer_pruner(width=n + k * rounds + 10) if kind == "seer" else None
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
            f"  pre-filled {n} trials for {kind} in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        studies[kind] = study
    results = []
    for _ in range(rounds):
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
        results.append(
            {
                kind: (
                    1000 * statistics.median(asks[kind]),
                    1000 * statistics.median(prunes[kind]),
                    1000 * statistics.median(whole[kind]),
                )
                for kind in ("sha", "seer")
            }
        )
    return results


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
    parser.add_argument("--probe", type=int, default=30, help="fresh trials timed per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of probes per size")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"overhead on SQLite: median ms per call over {args.probe} probe trials per round; "
        f"median of {args.rounds} rounds [lowest-highest ratio of a round]"
    )
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for n in args.sizes:
            rows.append((n, measure(n, args.probe, args.rounds, Path(directory))))
    columns = ("ask+suggest", "should_prune", "whole trial")
    print(
        f"\n{'trials':>7} | "
        + " | ".join(f"{c + ' SHA':>16} {'SEER':>7} {'ratio':>5} {'[rounds]':>11}" for c in columns)
    )
    for n, rounds in rows:
        cells = []
        for column in range(3):
            sha = statistics.median(r["sha"][column] for r in rounds)
            seer = statistics.median(r["seer"][column] for r in rounds)
            ratios = [r["seer"][column] / r["sha"][column] for r in rounds]
            spread = f"[{min(ratios):.2f}-{max(ratios):.2f}]"
            cells.append(
                f"{sha:>16.2f} {seer:>7.2f} {statistics.median(ratios):>5.2f} {spread:>11}"
            )
        print(f"{n:>7} | " + " | ".join(cells))
    print("\nplanning 1,000 configurations on at most 64 GPUs (81 epochs, eta 3)")
    for scaling, seconds, width in planning_times():
        print(f"  {scaling:<18} {1000 * seconds:7.1f} ms  -> {width} configurations")


if __name__ == "__main__":
    main()
