"""Predicted vs. measured time and cost of a plan run for real on this machine.

1. Profiles the probe training (torch gloo data-parallel MLP on digits) at 1 and 2 workers.
2. Plans a small successive-halving job (default 4→2→1 trials at 1/2/4 epochs) on local
   worker slots priced at ``--price`` $/slot-hour (no provisioning delay, exact billing).
3. Runs the plan: every stage launches its trials in waves of the planned concurrency, each a
   real multi-process gloo training of the stage's epochs with the planned workers; a stage
   ends when its last trial ends (the synchronous barrier). Cost = provisioned slots × wall
   time × price, as the simulator bills it.
4. Prints predicted (p50) vs. measured time and cost, as ``optuna-seer report`` does.

Trials restart from scratch each rung instead of resuming a checkpoint (the time structure
is the same: start-up plus the rung's epochs). Until LocalBackend lands this script is its own
tiny executor. Run:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/predict_vs_measure.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import tempfile
import time

import torch.multiprocessing as mp

from optuna_seer.cli import main as cli_main
from optuna_seer.elastic_plan import ElasticPlan, Stage
from optuna_seer.pricing import PriceQuote
from optuna_seer.probe import _free_port, measure_local_ddp, train_worker
from optuna_seer.profile import fit_profile
from optuna_seer.rubberband_planner import (
    PlanningProblem,
    SuccessiveHalvingJob,
    plan_rubberband,
    static_plans,
)
from optuna_seer.simulator import CloudModel, simulate


def run_stage(stage: Stage, epochs: int, data_repeats: int) -> float:
    """Wall seconds of one stage: waves of concurrent real trainings."""
    context = mp.get_context("spawn")
    started = time.time()
    remaining = stage.n_trials
    while remaining > 0:
        wave = min(remaining, stage.concurrent_trials)
        running = []
        for _ in range(wave):
            results = context.SimpleQueue()
            launched = time.time()
            process_context = mp.start_processes(  # type: ignore[attr-defined]
                train_worker,
                args=(stage.gpus_per_trial, _free_port(), epochs, data_repeats, launched, results),
                nprocs=stage.gpus_per_trial,
                join=False,
                start_method="spawn",
            )
            running.append((process_context, results))  # keep the queue alive for the child
        for process_context, _ in running:
            while not process_context.join():
                pass
        remaining -= wave
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=4)
    parser.add_argument("--reduction-factor", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2, help="local worker slots")
    parser.add_argument("--price", type=float, default=1.0, help="$ per slot-hour")
    parser.add_argument("--data-repeats", type=int, default=4)
    parser.add_argument(
        "--deadline-slack", type=float, default=3.0, help="deadline ÷ fastest static p95"
    )
    parser.add_argument("--launches", type=int, default=3, help="profiling launches per count")
    args = parser.parse_args()

    measurements = measure_local_ddp(
        (1, 2), epochs=3, data_repeats=args.data_repeats, launches=args.launches
    )
    profile = fit_profile(measurements, source="predict_vs_measure probe")
    print(f"profile: epoch {profile.epoch_seconds:.2f} s on 1 worker, start-up "
          f"{profile.startup_on(1):.1f} s, scaling {profile.curve.to_spec()}")  # fmt: skip
    slot = PriceQuote("local-slot", "cpu", 1, args.price, source="configured")
    cloud = CloudModel()
    job = SuccessiveHalvingJob.geometric(args.configs, args.reduction_factor, args.max_epochs)
    loose = PlanningProblem(job, profile, (slot,), 1e12, cloud=cloud, max_gpus=args.slots)
    fastest = min(loose.evaluator().stats(p).jct_quantile for p in static_plans(loose))
    problem = PlanningProblem(
        job, profile, (slot,), fastest * args.deadline_slack, cloud=cloud,
        max_gpus=args.slots, samples=500,
    )  # fmt: skip
    result = plan_rubberband(problem)
    plan: ElasticPlan = result.plan
    predicted = simulate(plan, profile, cloud, samples=2000, seed=0)
    print(plan.table(predicted.stage_start_s, predicted.stage_end_s))

    wall = 0.0
    dollars = 0.0
    previous = 0
    for stage in plan.stages:
        seconds = run_stage(stage, stage.resource - previous, args.data_repeats)
        print(f"stage to {stage.resource} epochs: {seconds:.1f} s measured")
        wall += seconds
        dollars += stage.gpus * seconds * slot.dollars_per_second
        previous = stage.resource

    with tempfile.TemporaryDirectory() as folder:
        plan_path, measured_path = Path(folder, "plan.json"), Path(folder, "run.json")
        plan_path.write_text(
            json.dumps(
                {
                    "plan": plan.to_dict(),
                    "prediction": {
                        "jct_p50_s": predicted.jct_p50,
                        "cost_p50": predicted.cost_p50,
                    },
                }
            )
        )
        measured_path.write_text(json.dumps({"wall_seconds": wall, "dollars": dollars}))
        cli_main(["report", "--plan", str(plan_path), "--measured", str(measured_path)])


if __name__ == "__main__":
    main()
