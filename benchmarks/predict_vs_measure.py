"""Predicted vs. measured time and cost of real SEER runs of the example on this machine.

Each round (``--rounds``, default 5):

1. Profiles the example's own training (``examples/lightning_digits.py:train``) on
   ``LocalBackend`` right before the round's runs, at the concurrency they run at:
   :func:`optuna_seer.profiling.harness.measure_alone_and_together` times one-worker launches alone
   and ``--slots`` of them together, in alternation at two epoch counts, so start-up, epoch
   time and contention are all measured under the same background load.
2. Runs a few small fixed plans (``--plans``) once each: ``ElasticTuner`` on
   ``LocalBackend`` (real Lightning processes, checkpoints, SQLite; a loose deadline and
   budget, so nothing is cut short). Each run's wall time, ledger dollars, launches, load
   average and the profile it was predicted from go to ``OUT/runs.jsonl`` as it ends.

Then it predicts every run from its round's profile alone (nothing is fitted to the runs):

* ``model``: :func:`optuna_seer.planning.simulator.simulate` p50 of the plan's time, and
  :func:`optuna_seer.planning.simulator.used_gpu_seconds` × price for the ledger's dollars, with the
  profile's start-up, epoch time and contention at each wave's number of launches at once
  (``cost_model.schedule``, what SEER plans with, gives the same time);
* ``no contention``: the same with the profile's contention dropped (each launch as fast
  as alone): what SEER's deterministic plan predicted before it knew contention;

and prints, per run, predicted and measured time and dollars with their ratio, then per
model the p50 and p90 of ``|measured / predicted - 1|`` over all runs, and per plan.

Run (about 15 minutes on an idle 2-core machine; 35 on a loaded one; run nothing else)::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/predict_vs_measure.py --out runs/pvm

Re-predict saved runs (e.g. with another model) without running anything; ``--profile``
predicts every run from that one profile instead of its round's::

    PYTHONPATH=. python benchmarks/predict_vs_measure.py --out runs/pvm --predict-only
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import math
import os
from pathlib import Path
import statistics
import time
from typing import Any

import optuna

from optuna_seer.backends.local import LocalBackend
from optuna_seer.execution.tuner import ElasticTuner, entrypoint_of
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Measurement, Profile, fit_profile
from optuna_seer.planning.simulator import CloudModel, simulate, used_gpu_seconds
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.profiling.harness import ScratchTrials, load_profile, measure_alone_and_together

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = f"{ROOT / 'examples' / 'lightning_digits.py'}:train"
# trials x workers @ cumulative epochs, one rung per comma.
DEFAULT_PLANS = "2x1@3;4x1@1,2x1@3;3x1@2"


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def parse_plan(spec: str) -> tuple[RungShape, ...]:
    """``"4x1@1,2x1@3"`` -> rungs of (trials, cumulative epochs, workers per trial)."""
    shapes = []
    for part in spec.split(","):
        try:
            trials_workers, epochs = part.strip().split("@")
            trials, workers = trials_workers.split("x")
            shapes.append(RungShape(int(trials), int(epochs), int(workers)))
        except ValueError:
            raise ValueError(
                f"plan rung {part!r} must read TRIALSxWORKERS@EPOCHS, e.g. 4x1@1"
            ) from None
    return tuple(shapes)


def seer_plan(shapes: Sequence[RungShape], profile: Profile, slots: int, price: float) -> Plan:
    """The SEER plan of ``shapes`` (loose deadline and budget: the run is never cut short)."""
    workload = profile.workload(shapes[-1].resource, gpus_per_node=slots)
    rungs = schedule(shapes, workload, price / 3600.0, ClusterLimits(max_gpus=slots))
    return Plan(
        rungs=rungs,
        reduction_factor=2,
        deadline_s=3600.0,
        budget_dollars=100.0,
        price_per_gpu_second=price / 3600.0,
        min_marginal_speedup=0.2,
    )


def profile_now(args: argparse.Namespace, round_: int) -> Profile:
    """Profile the script's one-worker launches alone and ``slots`` at once, in alternation
    (each launch a fresh trial of a scratch study, the search space's first seeded draw)."""
    storage = f"sqlite:///{args.out / 'profile.db'}"
    study = optuna.create_study(storage=storage, study_name=f"profile-{round_}-{time.time():.0f}")
    params = {"lr": 0.02, "hidden": 128, "weight_decay": 1e-4}
    backend = LocalBackend(
        slots=args.slots,
        log_dir=args.out / "logs" / f"profile-{round_}",
        env={"DIGITS_REPEATS": str(args.data_repeats)},
    )

    trials = ScratchTrials(
        study,
        storage,
        params,
        entrypoint_of(args.script),
        args.profile_epochs[1],
        args.out / "ckpt" / study.study_name,
    )

    load = load_average()
    alone, factor = measure_alone_and_together(
        backend,
        trials.spec,
        launches=args.slots,
        epochs=(args.profile_epochs[0], args.profile_epochs[1]),
        repeats=args.launches,
        reported=trials.reported,
    )
    return fit_profile(
        [alone],
        accelerator="cpu",
        source=f"round {round_}: alone and {args.slots} at once, load {load}",
        contention={args.slots: factor},
    )


def run_once(spec: str, profile: Profile, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    """One real run of plan ``spec``; returns what was measured."""
    shapes = parse_plan(spec)
    plan = seer_plan(shapes, profile, args.slots, args.price)
    name = f"pvm-{spec.replace(',', '_').replace('@', 'e')}-{repeat}-{time.strftime('%H%M%S')}"
    study = optuna.create_study(
        storage=f"sqlite:///{args.out / 'study.db'}",
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=repeat)),
        pruner=SeerPruner(plan=plan),
    )
    before = load_average()
    result = ElasticTuner(
        study,
        plan=plan,
        backend=LocalBackend(
            slots=args.slots,
            log_dir=args.out / "logs" / name,
            env={"DIGITS_REPEATS": str(args.data_repeats)},
        ),
        train=args.script,
        checkpoints=str(args.out / "ckpt"),
        drift_tolerance=math.inf,
        progress=False,
    ).run()
    return {
        "plan": spec,
        "repeat": repeat,
        "study": name,
        "wall_seconds": result.wall_seconds,
        "dollars": result.spent_dollars,
        "price_per_slot_hour": args.price,
        "load_before": before,
        "load_after": load_average(),
        "replanned": result.final_plan != result.plan,
        "launches": [
            {
                "trial": launch.trial_number,
                "rung": launch.rung,
                "workers": launch.workers,
                "started_at": launch.started_at,
                "finished_at": launch.finished_at,
                "train_seconds": launch.train_seconds,
                "epochs": launch.epochs,
                "state": launch.state,
            }
            for launch in result.launches
        ],
        "rung_ends": [r.finished_at for r in result.rungs],
        "profile": profile.to_dict(),
    }


def predictions(
    spec: str, profiles: dict[str, Profile], slots: int, price: float
) -> dict[str, tuple[float, float]]:
    """Predicted (time p50, ledger dollars) of plan ``spec`` by each labelled profile."""
    shapes = parse_plan(spec)
    quote = PriceQuote("local-slot", "cpu", 1, price, source="configured")
    out = {}
    for label, profile in profiles.items():
        elastic = ElasticPlan.from_seer(seer_plan(shapes, profile, slots, price), quote)
        result = simulate(elastic, profile, CloudModel(), samples=400, seed=0)
        out[label] = (result.jct_p50, used_gpu_seconds(elastic, profile) * price / 3600.0)
    return out


def pooled(profiles: Sequence[Profile], slots: int) -> Profile:
    """One profile from several rounds' one-worker measurements (all their samples) and the
    median of their contention factors."""
    samples = [m for p in profiles for m in p.measurements if m.workers == 1]
    merged = Measurement(
        1,
        tuple(t for m in samples for t in m.epoch_seconds),
        tuple(t for m in samples for t in m.startup_seconds),
    )
    factor = statistics.median(p.contention_on(slots) for p in profiles)
    return fit_profile([merged], accelerator="cpu", source="pooled", contention={slots: factor})


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(runs: Sequence[dict[str, Any]], slots: int, fixed: Profile | None) -> None:
    """Per run predicted vs measured, then p50/p90 of |ratio - 1| per model, overall and per
    plan. Each run is predicted from its own round's profile (``model``; ``fixed`` instead
    when given), from all rounds' profiles up to its own pooled (``pooled``), and from its
    round's profile without contention (``no contention``); ``oracle`` is each plan's median
    measured run, the best any prediction made before a run could hope for."""
    errors: dict[str, dict[str, list[float]]] = {}
    print(
        f"{'plan':<18}{'round':>6}{'load 1m':>8}{'contention':>11}{'meas. s':>9}{'pred. s':>9}"
        f"{'ratio':>7}{'meas. $':>9}{'pred. $':>9}{'ratio':>7}{'pooled s':>9}{'ratio':>7}"
        f"{'no-cont. s':>11}{'ratio':>7}"
    )
    by_round: dict[int, Profile] = {}
    for run in runs:
        if "profile" in run:
            by_round.setdefault(run["repeat"], Profile.from_dict(run["profile"]))
    for run in runs:
        profile = fixed or Profile.from_dict(run["profile"])
        earlier = [p for r, p in sorted(by_round.items()) if r <= run["repeat"]]
        models = {
            "model": profile,
            "pooled": pooled(earlier, slots) if earlier and fixed is None else profile,
            "no contention": Profile.from_dict({**profile.to_dict(), "contention": 1.0}),
        }
        pred = predictions(run["plan"], models, slots, run["price_per_slot_hour"])
        ratios = {}
        for label, (seconds, dollars) in pred.items():
            ratios[f"{label} (time)"] = run["wall_seconds"] / seconds
            ratios[f"{label} (dollars)"] = run["dollars"] / dollars
        for key, ratio in ratios.items():
            for group in ("all", run["plan"]):
                errors.setdefault(group, {}).setdefault(key, []).append(abs(ratio - 1.0))
        print(
            f"{run['plan']:<18}{run['repeat']:>6}{run['load_before'][0]:>8.2f}"
            f"{profile.contention_on(slots):>11.2f}"
            f"{run['wall_seconds']:>9.1f}{pred['model'][0]:>9.1f}{ratios['model (time)']:>7.3f}"
            f"{run['dollars']:>9.4f}{pred['model'][1]:>9.4f}{ratios['model (dollars)']:>7.3f}"
            f"{pred['pooled'][0]:>9.1f}{ratios['pooled (time)']:>7.3f}"
            f"{pred['no contention'][0]:>11.1f}{ratios['no contention (time)']:>7.3f}"
        )
    # The noise floor: predicting each run by its own plan's median measured time (an
    # oracle that has seen all the runs) still errs by the runs' own spread.
    for spec in dict.fromkeys(r["plan"] for r in runs):
        same = [r for r in runs if r["plan"] == spec]
        middle = statistics.median(r["wall_seconds"] for r in same)
        middle_dollars = statistics.median(r["dollars"] for r in same)
        for run in same:
            for group in ("all", spec):
                by_key = errors.setdefault(group, {})
                by_key.setdefault("oracle: plan's median run (time)", []).append(
                    abs(run["wall_seconds"] / middle - 1.0)
                )
                by_key.setdefault("oracle: plan's median run (dollars)", []).append(
                    abs(run["dollars"] / middle_dollars - 1.0)
                )
    print()
    print(f"{'|measured/predicted - 1|':<52}{'p50':>8}{'p90':>8}{'runs':>6}")
    for group, by_key in errors.items():
        for key, values in by_key.items():
            print(
                f"{group + ': ' + key:<52}{quantile(values, 0.5):>8.3f}"
                f"{quantile(values, 0.9):>8.3f}{len(values):>6}"
            )
    loads = [r["load_before"][0] for r in runs] + [r["load_after"][0] for r in runs]
    if loads:
        print(
            f"load average (1 min) at the runs' starts and ends: min {min(loads):.2f}, median "
            f"{statistics.median(loads):.2f}, max {max(loads):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--script", default=EXAMPLE, help="the training (file.py:function)")
    parser.add_argument("--out", type=Path, default=Path("runs/predict_vs_measure"))
    parser.add_argument(
        "--profile", type=Path, help="predict every run from this profile (no profiling)"
    )
    parser.add_argument("--profile-epochs", type=int, nargs=2, default=(1, 3))
    parser.add_argument(
        "--launches", type=int, default=2, help="profiling repeats per round and epoch count"
    )
    parser.add_argument("--data-repeats", type=int, default=8, help="DIGITS_REPEATS per epoch")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--price", type=float, default=3.0, help="$ per slot-hour")
    parser.add_argument("--plans", default=DEFAULT_PLANS, help="';'-separated plans")
    parser.add_argument("--rounds", type=int, default=5, help="runs per plan")
    parser.add_argument(
        "--predict-only", action="store_true", help="only re-predict OUT/runs.jsonl"
    )
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.jsonl"
    fixed = None if args.profile is None else load_profile(args.profile)
    if not args.predict_only:
        specs = [s.strip() for s in args.plans.split(";") if s.strip()]
        for round_ in range(args.rounds):
            profile = fixed or profile_now(args, round_)
            print(
                f"round {round_}: profile {profile.epoch_seconds:.2f} s/epoch, start-up "
                f"{profile.startup_on(1):.1f} s, contention {profile.contention_on(args.slots):.2f}"
                f" ({profile.source})",
                flush=True,
            )
            for spec in specs:
                run = run_once(spec, profile, args, round_)
                with runs_path.open("a", encoding="utf-8") as file:
                    file.write(json.dumps(run) + "\n")
                print(
                    f"{spec:<18} round {round_}: {run['wall_seconds']:.1f} s, "
                    f"${run['dollars']:.4f}, load {run['load_before']} -> {run['load_after']}",
                    flush=True,
                )
    runs = [json.loads(line) for line in runs_path.read_text(encoding="utf-8").splitlines()]
    report(runs, args.slots, fixed)


if __name__ == "__main__":
    main()
