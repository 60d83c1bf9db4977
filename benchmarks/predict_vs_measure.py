"""Predicted vs. measured time and cost of a real SEER run of the example on this machine.

1. Profiles the example's own training (``examples/lightning_digits.py:train``) on
   ``LocalBackend``: real launches at 1 and 2 workers and two epoch counts (1 and 5), twice
   each, plus two one-worker launches at once for the profile's ``contention``
   (``optuna-seer profile --backend local``; skip with ``--profile profile.json``).
2. Plans the job with SEER (``SeerPruner`` on the profile's workload, local slots priced at
   ``--price`` $/slot-hour) and predicts that plan's time and cost with the simulator
   (``ElasticPlan.from_seer`` + ``simulate``: no provisioning delay, exact billing, the
   profile's spread and contention). The prediction is stored in the study.
3. Runs exactly that plan: ``ElasticTuner`` on ``LocalBackend`` (real Lightning processes,
   checkpoints, SQLite), with ``drift_tolerance=inf`` so it re-plans only if the deadline or
   budget is at risk (it says so if it does: the executed plan then differs).
4. Prints the executor's report and ``optuna-seer report --storage URL --study NAME``:
   predicted (p50) vs. measured time, and cost as SEER's ledger charges it (slot-seconds the
   launches used × price), with the load average before and after.

Run (about 10-15 minutes on 2 shared cores)::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/predict_vs_measure.py --out runs/pvm
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import time

import optuna

from optuna_seer.backends.local import LocalBackend
from optuna_seer.budget import Budget, parse_duration
from optuna_seer.cli import main as cli_main
from optuna_seer.cli import store_prediction
from optuna_seer.cost_model import ClusterLimits
from optuna_seer.elastic_plan import ElasticPlan
from optuna_seer.executor import ElasticTuner
from optuna_seer.plan import Plan
from optuna_seer.pricing import PriceQuote
from optuna_seer.profile import Profile
from optuna_seer.pruner import SeerPruner
from optuna_seer.run_report import format_report
from optuna_seer.sampler import SeerSampler
from optuna_seer.simulator import CloudModel, simulate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = f"{ROOT / 'examples' / 'lightning_digits.py'}:train"


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--script", default=EXAMPLE, help="the training (file.py:function)")
    parser.add_argument("--out", type=Path, default=Path("runs/predict_vs_measure"))
    parser.add_argument("--profile", type=Path, help="reuse this profile instead of measuring")
    parser.add_argument("--workers", default="1,2", help="worker counts to profile")
    parser.add_argument("--contention", type=int, default=2, help="0: do not measure it")
    parser.add_argument(
        "--profile-epochs",
        type=int,
        nargs=2,
        default=(1, 5),
        help="the two epoch counts profiled (far apart: start-up varies a lot here)",
    )
    parser.add_argument(
        "--launches", type=int, default=2, help="profiling launches per worker and epoch count"
    )
    parser.add_argument("--data-repeats", type=int, default=8, help="DIGITS_REPEATS per epoch")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--price", type=float, default=3.0, help="$ per slot-hour")
    parser.add_argument("--deadline", default="8m")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--max-configs", type=int, default=9)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    env = {"DIGITS_REPEATS": str(args.data_repeats)}
    print(f"before: {_load()}", flush=True)
    profile_path = args.profile
    if profile_path is None:
        profile_path = args.out / "profile.json"
        command = [
            "profile", "--backend", "local", "--script", args.script,
            "--workers", *args.workers.split(","),
            "--epochs", *map(str, args.profile_epochs),
            "--env", f"DIGITS_REPEATS={args.data_repeats}", "--slots", str(args.slots),
            "--launches", str(args.launches),
            "--out", str(profile_path),
        ]  # fmt: skip
        if args.contention:
            command += ["--contention", str(args.contention)]
        print("optuna-seer " + " ".join(command), flush=True)
        if cli_main(command) != 0:
            raise SystemExit("profiling failed")
    profile = Profile.load(profile_path)

    workload = profile.workload(args.max_epochs, gpus_per_node=args.slots)
    pruner = SeerPruner(
        Budget(parse_duration(args.deadline), args.budget, args.price),
        workload,
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=args.slots),
        max_configs=args.max_configs,
    )
    seer_plan = pruner.plan
    elastic = ElasticPlan.from_seer(
        seer_plan, PriceQuote("local-slot", "cpu", 1, args.price, source="configured")
    )
    predicted = simulate(elastic, profile, CloudModel(), samples=args.samples, seed=args.seed)
    print(seer_plan)
    print("simulated (profile's spread and contention, no provisioning, exact billing):")
    print(elastic.table(predicted.stage_start_s, predicted.stage_end_s))

    db = args.out / "study.db"
    storage = f"sqlite:///{db}"
    name = f"pvm-{time.strftime('%Y%m%d-%H%M%S')}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=args.seed)),
        pruner=pruner,
    )
    store_prediction(study, elastic, profile, predicted)
    print(f"run: {_load()}", flush=True)
    result = ElasticTuner(
        study,
        plan=seer_plan,
        backend=LocalBackend(slots=args.slots, log_dir=args.out / "logs", env=env),
        train=args.script,
        checkpoints=str(args.out / "ckpt"),
        workload=workload,
        drift_tolerance=math.inf,
    ).run()
    print(format_report(result))

    def shape(plan: Plan) -> list[tuple[int, int, int]]:
        return [(r.n_trials, r.resource, r.gpus_per_trial) for r in plan.rungs]

    if shape(result.final_plan) != shape(seer_plan):
        print("NOTE: the executor re-planned; the executed plan differs from the predicted one.")
    print(f"after: {_load()}")
    print(f"optuna-seer report --storage {storage} --study {name}")
    cli_main(["report", "--storage", storage, "--study", name])


if __name__ == "__main__":
    main()
