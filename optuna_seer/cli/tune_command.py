"""``optuna-seer tune``: plan, show the prediction, confirm, execute, report predicted vs
measured — one command for both objectives.

* ``--objective min-cost``: RubberBand's cheapest plan whose p95 (``--quantile``) completion
  time meets ``--deadline`` (per stage: instance type, node count, GPUs per trial);
* ``--objective max-accuracy``: SEER's plan, the most configurations that fit the deadline
  and ``--budget`` at ``--quantile`` of the profile's epoch spread, on the first instance type.

Either way it is the plan ``optuna-seer plan`` prints for the same arguments
(:func:`~optuna_seer.cli.plan_choice.choose_plan` chooses it for both).

The plan runs through :func:`~optuna_seer.execution.stage_runner.run_elastic_plan` (the
``ElasticTuner`` on a cluster resized stage by stage). Backends:

* ``local``: ``--script`` on this machine's worker slots (``LocalBackend``); a slot is a
  one-GPU node priced ``--price-per-slot-hour``; no provisioning delay. The run is real, so
  it asks for confirmation first (``--yes`` skips it; without a terminal ``--yes`` is needed).
* ``skypilot``: the plan on SkyPilot clusters, one ``SkyPilotBackend`` per instance type it
  uses (``--checkpoints s3://…``); it asks for confirmation first too.
* ``replay``: a rehearsal on a simulated clock (``ReplayBackend``): the profile's epoch and
  start-up times, its spread, the cloud model's provisioning delays and billing, and
  synthetic learning curves. It runs the real executor in seconds and spends nothing.

``--spot-mix`` (min-cost, on a cloud) plans each stage on spot or on demand
(:func:`~optuna_seer.planning.spot.plan_spot_mix`), printing the price and reclaim risk of
each instance type on both markets, the all-on-demand and all-spot alternatives, and each
spot stage's expected recovery; ``--png`` charts the plan (markets marked) before it runs.
On a cloud a new cluster's delays come from ``--provisioning``, else the profile's measured
ones, else the ``--queue``/``--boot`` constants (the command prints which).

The run's storage and study (``--storage``/``--study``) make the command re-runnable: run
again, it continues an interrupted study or prints a finished one's stored result.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
import json
import math
from pathlib import Path
import sys
import tempfile
from typing import Any, TextIO

import numpy as np
import optuna
from optuna.storages import InMemoryStorage

from optuna_seer._install import install_hint
from optuna_seer.backends.base import Backend
from optuna_seer.backends.local import LocalBackend
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.cli.arguments import (
    add_cloud_arguments,
    add_instance_arguments,
    bounded_int,
    cloud_model,
    duration,
    positive_float,
)
from optuna_seer.cli.extras import require_module
from optuna_seer.cli.plan_choice import choose_plan
from optuna_seer.cli.plan_commands import (
    _instances,
    add_spot_mix_argument,
    print_prediction,
    profile_cloud,
    spot_offers,
    spot_recovery,
)
from optuna_seer.cli.plots import write_plan_chart
from optuna_seer.execution.naming import resumable_study_name
from optuna_seer.execution.stage_runner import StagedRun, run_elastic_plan
from optuna_seer.execution.staged_cluster import StagedCluster, no_delay
from optuna_seer.integration.prediction import prediction_summary
from optuna_seer.planning.plan import format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, SimulationResult, simulate
from optuna_seer.planning.spot import SpotOffer, spot_cloud
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.profiling.harness import load_profile

REPLAY_CONFIG = "config_id"
"""The one parameter of a replayed run: which synthetic curve a trial follows."""


def replayed_training() -> None:
    """Stands for the training program in a replay: ``ReplayBackend`` reports the epochs."""
    raise RuntimeError("a replayed trial is simulated by ReplayBackend, never run.")


def synthetic_curves(n_configs: int, epochs: int, seed: int) -> list[RecordedCurve]:
    """Learning curves for a rehearsal: each configuration rises towards its own plateau.

    Example:
        >>> curves = synthetic_curves(3, 4, seed=0)
        >>> len(curves), curves[0].epochs, curves[0].val_acc[0] < curves[0].val_acc[-1]
        (3, 4, True)
    """
    rng = np.random.default_rng([seed, 11])
    curves = []
    for _ in range(n_configs):
        plateau = float(rng.uniform(0.5, 0.95))
        rate = float(rng.uniform(0.1, 0.6))
        values = tuple(plateau * (1 - math.exp(-rate * e)) for e in range(1, epochs + 1))
        curves.append(RecordedCurve(values, tuple(v - 0.01 for v in values)))
    return curves


def add_tune_command(commands: Any) -> None:
    """Register ``tune`` on the ``optuna-seer`` sub-command parsers."""
    tune = commands.add_parser(
        "tune",
        help="plan (min-cost or max-accuracy), confirm, execute, report predicted vs measured",
    )
    tune.add_argument("--deadline", type=duration, required=True, help="e.g. 12h, 1h30m")
    tune.add_argument("--budget", type=positive_float, required=True, help="dollars")
    tune.add_argument("--profile", type=Path, required=True, help="profile JSON")
    tune.add_argument("--configs", type=bounded_int(1, 100_000), default=27)
    tune.add_argument("--reduction-factor", type=bounded_int(2, 1000), default=3)
    tune.add_argument("--max-epochs", type=bounded_int(1, 100_000), default=9)
    tune.add_argument("--min-resource", type=bounded_int(1, 100_000), default=1)
    tune.add_argument("--quantile", type=float, default=0.95, help="P(JCT <= deadline) to reach")
    tune.add_argument("--objective", choices=("min-cost", "max-accuracy"), default="min-cost")
    tune.add_argument("--backend", choices=("local", "replay", "skypilot"), default="local")
    tune.add_argument(
        "--script", help="local, skypilot: the training, file.py:function or script.py"
    )
    tune.add_argument("--slots", type=int, help="local: worker slots (default: GPUs or CPUs)")
    tune.add_argument("--cpu", action="store_true", help="local: CPU processes, no GPUs")
    tune.add_argument("--storage", help="study storage URL (default sqlite:///optuna-seer-tune.db)")
    tune.add_argument("--study", default="tune", help="study name (re-run continues it)")
    tune.add_argument(
        "--checkpoints",
        default="tune-checkpoints",
        help="directory or s3:// URI (skypilot: s3:// the nodes can reach)",
    )
    tune.add_argument("--yes", action="store_true", help="run without asking")
    add_spot_mix_argument(tune)
    tune.add_argument("--png", type=Path, help="chart the plan here (Gantt + cost) before it runs")
    tune.add_argument("--run-out", type=Path, help="write predicted vs measured JSON here")
    add_instance_arguments(tune)
    add_cloud_arguments(tune)
    tune.set_defaults(handler=cmd_tune)


def _confirm(args: argparse.Namespace, result: SimulationResult, out: TextIO) -> bool:
    if args.backend == "replay" or args.yes:
        return True
    if not sys.stdin.isatty():
        raise ValueError(
            f"the {args.backend} backend runs the plan for real: pass --yes to run it without "
            "a terminal to confirm on."
        )
    print(
        f"Run it ({format_seconds(result.jct_p50)} and ${result.cost_mean:,.2f} predicted)? [y/N] ",
        end="",
        file=out,
        flush=True,
    )
    return input().strip().lower() in ("y", "yes")


def _local_backend(args: argparse.Namespace) -> LocalBackend:
    if not args.script:
        raise ValueError("--backend local needs --script file.py:function (the training).")
    return LocalBackend(args.slots, gpus=() if args.cpu else None)


def _spot_offers(args: argparse.Namespace, instances: tuple[PriceQuote, ...]) -> list[SpotOffer]:
    """Each on-demand instance paired with its spot quote, reclaimed at the given rate."""
    if args.backend == "local":
        raise ValueError("--spot-mix needs a cloud: --backend replay or skypilot.")
    return spot_offers(args, instances)


def _check_skypilot(args: argparse.Namespace) -> None:
    """Refuse what a SkyPilot run cannot do before planning it."""
    if not args.script:
        raise ValueError("--backend skypilot needs --script file.py:function (the training).")
    if not str(args.checkpoints).startswith("s3://"):
        raise ValueError(
            f"--backend skypilot needs --checkpoints s3://bucket/prefix (the nodes read and "
            f"write them there), not {args.checkpoints!r}."
        )


def _skypilot_factory(max_gpus: int) -> Callable[[PriceQuote], Backend]:
    """``instance -> SkyPilotBackend`` (its accelerator × GPUs, market and price): one per
    instance type a plan uses, since a ``SkyPilotBackend`` takes its resources when built."""
    try:
        from optuna_seer.backends.skypilot.backend import SkyPilotBackend
    except ImportError as exc:
        raise ValueError(
            f"--backend skypilot needs SkyPilot ({exc}): {install_hint('sky')}."
        ) from None

    def backend_for(instance: PriceQuote) -> Backend:
        return SkyPilotBackend(
            resources=f"{instance.accelerator}:{instance.gpus}",
            use_spot=instance.market == "spot",
            max_gpus=max_gpus,
            price_per_gpu_hour=instance.dollars_per_gpu_hour,
            workdir=Path.cwd(),
        )

    return backend_for


def cmd_tune(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer tune``: 0 when the run met the deadline (and the budget), else 1."""
    if args.budget is None:
        raise ValueError("tune needs --budget (dollars): the executor stops at it.")
    if args.png:
        require_module("matplotlib", "optuna-seer tune --png")
    profile = load_profile(args.profile)
    backend: Backend | None = None
    if args.backend == "local":
        backend = _local_backend(args)
        if args.price_per_slot_hour is None:
            args.price_per_slot_hour = 1.0
            print("local slots priced at $1.00/slot-hour (--price-per-slot-hour)", file=out)
        cloud = CloudModel(billing=args.billing)  # the slots are there: no provisioning
        max_gpus = min(args.max_gpus, backend.slots)
        if profile.provisioning is not None:
            print("local slots: no provisioning delay (the profile's is for clouds)", file=out)
    else:
        cloud = profile_cloud(args, profile, cloud_model(args), out)
        max_gpus = args.max_gpus
        if args.backend == "replay":
            # A replayed launch that fails keeps only its rung-start checkpoint.
            cloud = dataclasses.replace(cloud, checkpoint_interval_epochs=0)
    instances = _instances(args, profile)
    if args.backend == "skypilot":
        _check_skypilot(args)
    offers = _spot_offers(args, instances) if args.spot_mix else []
    if offers:
        cloud = spot_cloud(cloud, offers)
    plan = choose_plan(args, profile, instances, cloud, max_gpus, offers, out).plan
    prediction = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
    print(plan.table(prediction.stage_start_s, prediction.stage_end_s), file=out)
    print_prediction(prediction, out)
    print(
        f"P(finish by deadline {format_seconds(args.deadline)}) = "
        f"{prediction.probability_by(args.deadline):.3f}",
        file=out,
    )
    recovery = spot_recovery(plan, profile, cloud, args, out)
    if args.png:
        title = f"tune: {args.objective} plan" + (" (spot/on-demand mix)" if offers else "")
        write_plan_chart(args.png, plan, prediction, args.deadline, args.budget, title, recovery)
        print(f"wrote {args.png}", file=out)
    if not _confirm(args, prediction, out):
        print("not run.", file=out)
        return 0
    runner: Backend | Callable[[PriceQuote], Backend] | None = backend
    if args.backend == "skypilot":
        runner = _skypilot_factory(max_gpus)
    run = _execute(args, plan, profile, cloud, prediction, runner)
    print(run.report(args.deadline), file=out)
    best = run.tuning.best_trial
    if best is not None:
        print(f"best: trial {best.number}, value {best.value:.6g}, {best.params}", file=out)
    if args.run_out:
        Path(args.run_out).write_text(json.dumps(_record(args, run), indent=2) + "\n")
        print(f"wrote {args.run_out}", file=out)
    met = run.wall_seconds <= args.deadline and run.dollars <= args.budget
    return 0 if met else 1


def _execute(
    args: argparse.Namespace,
    plan: ElasticPlan,
    profile: Profile,
    cloud: CloudModel,
    prediction: SimulationResult,
    backend: Backend | Callable[[PriceQuote], Backend] | None,
) -> StagedRun:
    common: dict[str, Any] = {
        "profile": profile,
        "deadline_s": args.deadline,
        "budget_dollars": args.budget,
        "cloud": cloud,
        "prediction": prediction,
    }
    if backend is not None:
        storage = args.storage or f"sqlite:///{Path('optuna-seer-tune.db').resolve()}"
        return run_elastic_plan(
            plan,
            backend=backend,
            train=args.script,
            checkpoints=args.checkpoints,
            storage=storage,
            study_name=resumable_study_name(storage, args.study),
            delays=no_delay,
            progress=True,
            **common,
        )
    storage_obj = InMemoryStorage()
    replay = ReplayBackend(
        synthetic_curves(plan.stages[0].n_trials, plan.stages[-1].resource, args.seed),
        profile.curve,
        profile.epoch_seconds_on(1),
        straggler_cv=profile.cv_on(1),
        seed=args.seed,
        slots=max(StagedCluster.capacity(s) for s in plan.stages),
        startup_seconds=profile.startup_on(1),
        storage=storage_obj,
    )
    model = cloud.provisioning_model
    n_configs = plan.stages[0].n_trials
    with tempfile.TemporaryDirectory(prefix="optuna-seer-replay-") as scratch:
        return run_elastic_plan(
            plan,
            backend=replay,
            train=f"{__name__}:replayed_training",
            checkpoints=scratch,
            storage=storage_obj,
            study_name=args.study,
            search_space=lambda trial: trial.suggest_int(REPLAY_CONFIG, 0, n_configs - 1),
            sampler=optuna.samplers.RandomSampler(seed=args.seed),
            delays=lambda number, stage: model.delay_for(args.seed, number),
            storage_url="replay:in-memory",
            poll_seconds=5.0,
            # Spot stages are reclaimed at the cloud model's rates (seeded), as a cloud would.
            simulate_preemptions=any(s.instance.market == "spot" for s in plan.stages),
            seed=args.seed,
            **common,
        )


def _record(args: argparse.Namespace, run: StagedRun) -> dict[str, Any]:
    best = run.tuning.best_trial
    return {
        "objective": args.objective,
        "backend": args.backend,
        "deadline_s": args.deadline,
        "budget": args.budget,
        "plan": run.plan.to_dict(),
        "prediction": None if run.prediction is None else prediction_summary(run.prediction),
        "wall_seconds": run.wall_seconds,
        "dollars": run.dollars,
        "billing": run.billing.to_spec(),
        "preemptions": run.preemptions,
        "leases": [
            {
                "stages": list(lease.stages),
                "instance": lease.instance.instance_type,
                "nodes": lease.nodes,
                "queue_s": lease.queue_s,
                "boot_s": lease.boot_s,
                "held_s": lease.held_seconds,
                "dollars": lease.dollars(run.billing),
            }
            for lease in run.leases
        ],
        "best": None if best is None else {"number": best.number, "value": best.value},
    }
