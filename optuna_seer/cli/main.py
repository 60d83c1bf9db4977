"""``optuna-seer``: plan, simulate, profile and report from the command line.

Examples::

    optuna-seer profile --out profile.json --workers 1,2
    optuna-seer profile --backend local --script examples/lightning_digits.py:train \\
        --workers 1 2 --epochs 1 3 --contention 2 --out profile.json
    optuna-seer plan --deadline 12h --budget 400 --profile profile.json --objective min-cost \\
        --configs 81 --reduction-factor 3 --max-epochs 27 --instance p3.2xlarge --png plan.png
    optuna-seer simulate --plan plan.json --profile profile.json --samples 5000
    optuna-seer report --plan plan.json --measured run.json
    optuna-seer report --storage sqlite:///runs/seer.db --study my-study
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import math
from pathlib import Path
import statistics
import sys
import tempfile
from typing import Any

from optuna_seer.integration.keys import STUDY_PLAN
from optuna_seer.integration.optuna_internals import storage_of, study_id_of
from optuna_seer.planning.budget import Budget, parse_duration
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan, format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile, fit_profile
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    SuccessiveHalvingJob,
    plan_rubberband,
)
from optuna_seer.planning.seer import InfeasiblePlanError, plan_seer
from optuna_seer.planning.simulator import CloudModel, SimulationResult, simulate, used_gpu_seconds
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.pricing.sources import (
    aws_spot_quotes,
    find_quote,
    read_price_csv,
    resolve_quote,
    sky_catalog_quote,
)
from optuna_seer.profiling.harness import (
    ScratchTrials,
    load_profile,
    measure_contention,
    measure_on_backend,
    save_profile,
)

PLAN_FORMAT = 1
_CUT_SHORT = "trials cut short"  # key _measured_from_study adds to the attrs it returns


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 and finite")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return value


def _duration(text: str) -> float:
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text, name="duration")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_list(text: str) -> tuple[int, ...]:
    """Worker counts: ``1,2`` (or one count per argument with ``nargs``)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,4") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r} must be worker counts >= 1, e.g. 1 2")
    return counts


def _add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cloud model")
    group.add_argument("--queue", type=_duration, default=60.0, help="mean queueing delay (60s)")
    group.add_argument("--boot", type=_duration, default=120.0, help="mean instance start-up (2m)")
    group.add_argument("--provisioning-cv", type=_positive_float, default=0.3)
    group.add_argument(
        "--billing", default="per-second", help="exact | per-second | per-minute | per-hour | …"
    )
    group.add_argument("--transfer-per-gb", type=_positive_float, default=0.0)
    group.add_argument("--storage-per-gb-month", type=_positive_float, default=0.0)
    group.add_argument(
        "--spot-interruptions", type=_positive_float, default=0.0, help="per node-hour"
    )
    group.add_argument("--samples", type=_positive_int, default=1000, help="Monte Carlo samples")
    group.add_argument("--seed", type=int, default=0)


def _add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("instances and prices")
    group.add_argument(
        "--instance",
        action="append",
        default=[],
        help="instance type (repeatable); default p3.2xlarge, p3.8xlarge, p3.16xlarge",
    )
    group.add_argument("--market", choices=("on-demand", "spot"), default="on-demand")
    group.add_argument("--region", default="")
    group.add_argument("--prices", type=Path, help="CSV price table (columns of the shipped one)")
    group.add_argument(
        "--price-per-slot-hour",
        type=_positive_float,
        help="plan on local worker slots at this $/h each (instead of instance types)",
    )
    group.add_argument("--no-sky", action="store_true", help="do not read SkyPilot's catalog")
    group.add_argument("--max-gpus", type=_positive_int, default=64, help="quota: GPUs at once")


def _cloud(args: argparse.Namespace) -> CloudModel:
    return CloudModel(
        queue_seconds=args.queue,
        boot_seconds=args.boot,
        provisioning_cv=args.provisioning_cv,
        billing=args.billing,
        transfer_dollars_per_gb=args.transfer_per_gb,
        storage_dollars_per_gb_month=args.storage_per_gb_month,
        spot_interruptions_per_node_hour=args.spot_interruptions,
    )


def _instances(args: argparse.Namespace, profile: Profile) -> tuple[PriceQuote, ...]:
    if args.price_per_slot_hour is not None:
        return (
            PriceQuote(
                "local-slot",
                profile.accelerator or "cpu",
                1,
                args.price_per_slot_hour,
                source="--price-per-slot-hour",
            ),
        )
    names = args.instance or ["p3.2xlarge", "p3.8xlarge", "p3.16xlarge"]
    table = read_price_csv(args.prices) if args.prices else None
    if table is not None:
        return tuple(find_quote(table, n, args.market, args.region) for n in names)
    if args.market == "spot":
        return _spot_quotes(names, args.region, use_sky=not args.no_sky)
    return tuple(
        resolve_quote(n, market=args.market, region=args.region, use_sky=not args.no_sky)
        for n in names
    )


def _spot_quotes(names: Sequence[str], region: str, *, use_sky: bool) -> tuple[PriceQuote, ...]:
    """Spot prices: SkyPilot's catalog where on disk, else AWS ``describe_spot_price_history``
    (boto3's usual credentials; ``AWS_ENDPOINT_URL`` is honoured)."""
    found = {}
    for name in names:
        quote = sky_catalog_quote(name, market="spot", region=region) if use_sky else None
        if quote is not None:
            found[name] = quote
    missing = [n for n in names if n not in found]
    if missing:
        try:
            quotes = aws_spot_quotes(missing, region=region or "us-east-1")
        except RuntimeError as exc:
            raise ValueError(f"no spot prices for {', '.join(missing)}: {exc}") from None
        found.update({q.instance_type: q for q in quotes})
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(
            f"no spot price for {', '.join(unknown)} (not offered in the region, or not in the "
            "shipped table's instance types); pass --prices with a spot row."
        )
    return tuple(found[n] for n in names)


def _prediction(result: SimulationResult) -> dict[str, float]:
    return {
        "jct_mean_s": result.jct_mean,
        "jct_p50_s": result.jct_p50,
        "jct_p95_s": result.jct_p95,
        "cost_mean": result.cost_mean,
        "cost_p50": result.cost_p50,
        "cost_p95": result.cost_p95,
    }


def _print_prediction(result: SimulationResult, out: Any) -> None:
    print(
        f"time  mean {format_seconds(result.jct_mean)}  p50 {format_seconds(result.jct_p50)}  "
        f"p95 {format_seconds(result.jct_p95)}\n"
        f"cost  mean ${result.cost_mean:,.2f}  p50 ${result.cost_p50:,.2f}  "
        f"p95 ${result.cost_p95:,.2f}",
        file=out,
    )


def _write_png(
    path: Path,
    plan: ElasticPlan,
    result: SimulationResult,
    deadline_s: float | None,
    budget: float | None,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = 3600.0
    figure, (gantt, spend) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colours = plt.get_cmap("viridis")
    most = max(s.gpus_per_trial for s in plan.stages)
    for index, stage in enumerate(plan.stages):
        start, end = result.stage_start_s[index] / hours, result.stage_end_s[index] / hours
        gantt.barh(
            index,
            end - start,
            left=start,
            color=colours(math.log2(stage.gpus_per_trial) / max(1.0, math.log2(most))),
            edgecolor="black",
        )
        gantt.text(
            start + (end - start) / 2,
            index,
            f"{stage.n_trials}×{stage.gpus_per_trial} GPU · {stage.nodes}×"
            f"{stage.instance.instance_type}",
            ha="center",
            va="center",
            fontsize=8,
            color="white",
        )
    gantt.set_yticks(range(len(plan.stages)))
    gantt.set_yticklabels([f"rung {i}" for i in range(len(plan.stages))])
    gantt.invert_yaxis()
    gantt.set_ylabel("trials × GPUs per trial")
    gantt.set_title(title)
    times = [0.0, *(e / hours for e in result.stage_end_s)]
    costs = [0.0, *result.stage_cost]
    spend.plot(times, costs, marker="o", label="cumulative cost (mean)")
    spend.set_ylabel("dollars")
    spend.set_xlabel("hours since start")
    for axis in (gantt, spend):
        if deadline_s is not None:
            axis.axvline(deadline_s / hours, color="red", linestyle="--", label="deadline")
        axis.axvline(result.jct_p95 / hours, color="orange", linestyle=":", label="p95 finish")
    if budget is not None:
        spend.axhline(budget, color="purple", linestyle="--", label="budget")
    spend.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _load_plan_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read plan {path}: {exc}") from None
    if not isinstance(data, dict) or "plan" not in data:
        raise ValueError(f"{path} is not a plan written by 'optuna-seer plan --out'.")
    return data


def _load_measured_file(path: Path) -> tuple[float, float]:
    """(wall seconds, dollars) of a run, from ``{"wall_seconds": …, "dollars": …}``."""
    expected = '{"wall_seconds": 5400, "dollars": 12.5}'
    try:
        measured = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read --measured {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"--measured {path} is not JSON ({exc}); write e.g. {expected}.") from None
    try:
        wall, dollars = float(measured["wall_seconds"]), float(measured["dollars"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"--measured {path} must hold e.g. {expected}, not {measured!r:.60}."
        ) from None
    if not (math.isfinite(wall) and wall > 0 and math.isfinite(dollars) and dollars >= 0):
        raise ValueError(
            f"--measured {path}: wall_seconds={wall!r} must be > 0 and dollars={dollars!r} >= 0."
        )
    return wall, dollars


def _cmd_plan(args: argparse.Namespace, out: Any) -> int:
    profile = load_profile(args.profile)
    cloud = _cloud(args)
    instances = _instances(args, profile)
    deadline = args.deadline
    record: dict[str, Any] = {"format": PLAN_FORMAT, "objective": args.objective}
    over_budget = False
    if args.objective == "min-cost":
        job = SuccessiveHalvingJob.geometric(
            args.configs, args.reduction_factor, args.max_epochs, args.min_resource
        )
        problem = PlanningProblem(
            job,
            profile,
            instances,
            deadline,
            cloud=cloud,
            max_gpus=args.max_gpus,
            quantile=args.quantile,
            samples=args.samples,
            seed=args.seed,
        )
        found = plan_rubberband(problem)
        plan = found.plan
        result = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
        print(found.summary(), file=out)
        over_budget = args.budget is not None and found.stats.cost > args.budget
        if found.static_stats is not None:
            record["static_cost_mean"] = found.static_stats.cost
    else:
        if args.budget is None:
            raise ValueError("--objective max-accuracy needs --budget (dollars).")
        instance = instances[0]
        seer = plan_seer(
            Budget(deadline, args.budget, instance.dollars_per_gpu_hour),
            profile.workload(args.max_epochs, gpus_per_node=instance.gpus),
            args.reduction_factor,
            limits=ClusterLimits(
                max_gpus=args.max_gpus,
                provisioning_seconds=cloud.queue_seconds + cloud.boot_seconds,
            ),
            min_resource=args.min_resource,
            max_configs=args.configs,
        )
        print(seer, file=out)
        plan = ElasticPlan.from_seer(seer, instance)
        result = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
        record["seer_plan"] = seer.to_dict()
    print(plan.table(result.stage_start_s, result.stage_end_s), file=out)
    _print_prediction(result, out)
    quantile_s = result.jct_quantile(args.quantile)
    print(
        f"P(finish by deadline) = {result.probability_by(deadline):.3f}; "
        f"p{round(args.quantile * 100)} {format_seconds(quantile_s)} vs deadline "
        f"{format_seconds(deadline)}",
        file=out,
    )
    record.update(
        deadline_s=deadline,
        budget=args.budget,
        quantile=args.quantile,
        plan=plan.to_dict(),
        prediction=_prediction(result),
    )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=out)
    if args.png:
        _write_png(args.png, plan, result, deadline, args.budget, f"{args.objective} plan")
        print(f"wrote {args.png}", file=out)
    if over_budget:
        print(
            f"optuna-seer plan: over budget: the cheapest plan meeting the deadline costs "
            f"${result.cost_mean:,.2f} (mean) > ${args.budget:,.2f}; raise the budget or the "
            "deadline, or shrink the job.",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_simulate(args: argparse.Namespace, out: Any) -> int:
    data = _load_plan_file(args.plan)
    plan = ElasticPlan.from_dict(data["plan"])
    profile = load_profile(args.profile)
    result = simulate(plan, profile, _cloud(args), samples=args.samples, seed=args.seed)
    print(plan.table(result.stage_start_s, result.stage_end_s), file=out)
    _print_prediction(result, out)
    deadline = args.deadline if args.deadline is not None else data.get("deadline_s")
    if deadline is not None:
        print(
            f"P(finish by {format_seconds(deadline)}) = {result.probability_by(deadline):.3f}",
            file=out,
        )
    if args.png:
        _write_png(args.png, plan, result, deadline, data.get("budget"), "simulated plan")
        print(f"wrote {args.png}", file=out)
    return 0


def _cmd_profile(args: argparse.Namespace, out: Any) -> int:
    workers = tuple(sorted({c for group in args.workers for c in group}))
    if 1 not in workers:
        raise ValueError(f"--workers {workers} must include 1: speedups are relative to it.")
    if args.backend == "local":
        return _profile_local(args, workers, out)
    if args.script is not None or args.contention:
        raise ValueError("--script and --contention profile the user's trial: add --backend local.")
    from optuna_seer.profiling.probe import measure_local_ddp

    args.epochs = args.epochs or [3]
    if len(args.epochs) != 1:
        raise ValueError(f"--epochs {args.epochs}: the probe takes one count (e.g. 3).")
    measurements = measure_local_ddp(
        workers, epochs=args.epochs[0], data_repeats=args.repeats, launches=args.launches
    )
    profile = fit_profile(
        measurements,
        scaling_model=args.scaling_model,
        checkpoint_gb=args.checkpoint_gb,
        accelerator="cpu",
        source="optuna-seer profile: torch gloo data-parallel MLP on digits, 127.0.0.1",
    )
    return _print_and_save_profile(profile, args.out, out)


def _print_and_save_profile(profile: Profile, path: Path, out: Any) -> int:
    for m in profile.measurements:
        print(
            f"{m.workers} worker(s): epoch {m.mean_epoch_seconds:.3f} s (cv {m.epoch_cv:.3f}), "
            f"start-up {statistics.fmean(m.startup_seconds):.2f} s",
            file=out,
        )
    print(f"scaling: {profile.curve.to_spec()}", file=out)
    contention = profile.to_dict()["contention"]
    if len(contention) > 1:
        print(f"contention (launches at once: slowdown): {contention}", file=out)
    save_profile(profile, path)
    print(f"wrote {path}", file=out)
    return 0


def _first_draw(script: str) -> dict[str, Any]:
    """One draw (seeded) of the search space defined next to ``script``."""
    import optuna

    from optuna_seer.execution.tuner import _search_space_of

    try:
        space = _search_space_of(script)
    except ValueError:
        raise ValueError(
            f"{script} defines no search_space(trial); pass --params '{{\"lr\": 0.01, ...}}'."
        ) from None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space(trial)
    return dict(trial.params)


def _profile_local(args: argparse.Namespace, workers: tuple[int, ...], out: Any) -> int:
    """Profile the user's trial on :class:`LocalBackend`: real launches of ``--script``
    (``torchrun`` DDP for several workers) reporting to a scratch SQLite study."""
    import optuna

    from optuna_seer.backends.local import LocalBackend
    from optuna_seer.execution.tuner import entrypoint_of

    if args.script is None:
        raise ValueError("--backend local needs --script file.py:function (the training).")
    args.epochs = args.epochs or [1, 3]
    if len(args.epochs) != 2 or not 1 <= args.epochs[0] < args.epochs[1]:
        raise ValueError(f"--epochs {args.epochs}: give two counts a < b, e.g. --epochs 1 3.")
    epochs = (args.epochs[0], args.epochs[1])
    entrypoint = entrypoint_of(args.script)
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise ValueError(
                f"--params {args.params!r} is not JSON ({exc}); write e.g. '{{\"lr\": 0.01}}'."
            ) from None
        if not isinstance(params, dict):
            raise ValueError(f"--params {args.params!r} must be a JSON object.")
    else:
        params = _first_draw(args.script)
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r} must be KEY=VALUE.")
        env[key] = value
    slots = args.slots or max(*workers, args.contention, 1)
    print(f"profiling {args.script} with params {params} on {slots} local slot(s)", file=out)
    with tempfile.TemporaryDirectory(prefix="seer-profile-") as scratch:
        storage = f"sqlite:///{Path(scratch) / 'profile.db'}"
        study = optuna.create_study(storage=storage, study_name="seer-profile")
        backend = LocalBackend(slots=slots, log_dir=args.log_dir or Path(scratch) / "logs", env=env)

        trials = ScratchTrials(
            study, storage, params, entrypoint, epochs[1], Path(scratch) / "ckpt"
        )
        measurements = measure_on_backend(
            backend, trials.spec, workers=workers, epochs=epochs, repeats=args.launches,
            timeout_s=args.timeout,
        )  # fmt: skip
        contention: dict[int, float] = {1: 1.0}
        if args.contention:
            # Alone and together in alternation (alone=None): on a shared host, launches
            # alone timed minutes before would measure the load's drift, not contention.
            contention[args.contention] = measure_contention(
                backend, trials.spec, None, launches=args.contention, epochs=epochs,
                repeats=args.launches, timeout_s=args.timeout,
            )  # fmt: skip
    profile = fit_profile(
        measurements,
        scaling_model=args.scaling_model,
        checkpoint_gb=args.checkpoint_gb,
        accelerator="cpu",
        source=f"optuna-seer profile --backend local --script {args.script} (params {params})",
        contention=contention,
    )
    return _print_and_save_profile(profile, args.out, out)


def store_prediction(
    study: Any, plan: ElasticPlan, profile: Profile, result: SimulationResult
) -> dict[str, Any]:
    """Keep what the simulator predicts for ``study``'s run in its storage, where
    ``optuna-seer report --storage URL --study NAME`` finds it after the run.

    Besides the simulated distribution it stores the per-use cost
    (:func:`~optuna_seer.planning.simulator.used_gpu_seconds` × price): the quantity SEER's ledger
    measures. Returns the record.
    """
    from optuna_seer.integration.keys import STUDY_PREDICTION

    price_per_gpu_second = plan.stages[0].instance.dollars_per_gpu_hour / 3600.0
    record: dict[str, Any] = {
        **_prediction(result),
        "used_cost": used_gpu_seconds(plan, profile) * price_per_gpu_second,
        "plan": plan.to_dict(),
        "profile": profile.to_dict(),
    }
    storage_of(study).set_study_system_attr(study_id_of(study), STUDY_PREDICTION, record)
    return record


def _measured_from_study(storage: str, study_name: str) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, GPU-seconds, study system attrs) of a finished SEER run, from its
    deadline clock and ledger in storage."""
    from urllib.parse import urlsplit

    import optuna

    from optuna_seer.integration.keys import STUDY_STARTED_AT, stop_reason
    from optuna_seer.integration.ledger import spent_gpu_seconds
    from optuna_seer.integration.trial_gpus import implicit_placement_in
    from optuna_seer.storage.urls import open_storage, redact_url

    shown = redact_url(storage)
    try:
        opened = open_storage(storage)
    except Exception as exc:  # SQLAlchemy, drivers, gRPC: many kinds, all a bad --storage
        detail = str(exc).replace(storage, shown)
        try:
            password = urlsplit(storage).password
        except ValueError:  # not a URL at all: nothing to hide
            password = None
        if password:
            detail = detail.replace(password, "***")
        raise ValueError(
            f"cannot open --storage {shown} ({type(exc).__name__}: {detail}); give an Optuna "
            "storage URL such as sqlite:///runs/seer.db or postgresql://user@host/db."
        ) from None
    names = [s.study_name for s in opened.get_all_studies()]
    if study_name not in names:
        raise ValueError(
            f"--study {study_name!r} is not in {shown}; its studies: {names or 'none'}."
        )
    study = optuna.load_study(study_name=study_name, storage=opened)
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    if STUDY_STARTED_AT not in attrs:
        raise ValueError(
            f"study {study_name!r} has no deadline clock, so it was not run by SEER (an "
            "ElasticTuner, or SeerSampler/SeerPruner, starts it): give a SEER study's name, "
            "or compare a plan with --plan plan.json --measured run.json."
        )
    trials = study.get_trials(deepcopy=False)
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None]
    if not ends:
        raise ValueError(f"study {study_name!r} has no finished trials yet.")
    end = max(ends)
    cut = sum(1 for t in trials if (stop_reason(t) or "").startswith(("deadline", "budget")))
    attrs = {**attrs, _CUT_SHORT: cut}
    spent = spent_gpu_seconds(trials, end, implicit_placement_in(attrs))
    return end - float(attrs[STUDY_STARTED_AT]), spent, attrs


def _study_prediction(
    args: argparse.Namespace, attrs: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The prediction for a run read from storage, and where it came from."""
    from optuna_seer.integration.keys import STUDY_PREDICTION

    stored = attrs.get(STUDY_PREDICTION)
    if args.profile is not None or stored is None:
        if STUDY_PLAN not in attrs:
            raise ValueError(f"study {args.study!r} holds no SEER plan; pass --plan plan.json.")
        seer = Plan.from_dict(attrs[STUDY_PLAN])
        quote = PriceQuote("local-slot", "cpu", 1, seer.price_per_gpu_second * 3600.0)
        plan = ElasticPlan.from_seer(seer, quote)
        if args.profile is None:
            return (
                {"jct_p50_s": seer.predicted_seconds, "cost_p50": seer.predicted_cost},
                "the SEER plan's deterministic model (no profile stored; pass --profile)",
            )
        profile = load_profile(args.profile)
        result = simulate(plan, profile, _cloud(args), samples=args.samples, seed=args.seed)
        used = used_gpu_seconds(plan, profile) * quote.dollars_per_second
        return {**_prediction(result), "used_cost": used}, f"simulated with {args.profile}"
    source = stored.get("profile", {}).get("source", "a profile")
    return dict(stored), f"the simulation stored with the run (profile: {source})"


def _cmd_report(args: argparse.Namespace, out: Any) -> int:
    prediction: dict[str, Any] | None
    if args.plan is None:
        if not (args.storage and args.study):
            raise ValueError("give --plan plan.json, or --storage URL --study NAME of a SEER run.")
        wall, gpu_seconds, attrs = _measured_from_study(args.storage, args.study)
        prediction, source = _study_prediction(args, attrs)
        if STUDY_PLAN not in attrs:
            raise ValueError(f"study {args.study!r} holds no SEER plan; pass --plan plan.json.")
        price = Plan.from_dict(attrs[STUDY_PLAN]).price_per_gpu_second * 3600.0
        dollars = gpu_seconds * price / 3600.0
        print(f"study {args.study!r}: predicted by {source}", file=out)
        if attrs[_CUT_SHORT]:
            print(
                f"note: {attrs[_CUT_SHORT]} trial(s) were stopped by the deadline or the budget, "
                "so the run did less work than the plan predicted.",
                file=out,
            )
    else:
        data = _load_plan_file(args.plan)
        prediction = data.get("prediction")
        elastic = ElasticPlan.from_dict(data["plan"])
        if args.profile is not None:
            profile = load_profile(args.profile)
            result = simulate(elastic, profile, _cloud(args), samples=args.samples, seed=args.seed)
            prediction = _prediction(result)
        if prediction is None:
            raise ValueError(f"{args.plan} holds no prediction; pass --profile to simulate it.")
        price = elastic.stages[0].instance.dollars_per_gpu_hour
        if args.measured is not None:
            wall, dollars = _load_measured_file(args.measured)
        elif args.storage and args.study:
            wall, gpu_seconds, _ = _measured_from_study(args.storage, args.study)
            dollars = gpu_seconds * price / 3600.0
        else:
            raise ValueError("give --measured run.json, or --storage URL --study NAME.")
    rows = [
        (
            "time",
            format_seconds(prediction["jct_p50_s"]),
            format_seconds(wall),
            wall / prediction["jct_p50_s"],
        )
    ]
    if "used_cost" in prediction and args.measured is None:
        # The ledger charges what launches use; compare it with the same quantity.
        rows.append(
            (
                "cost",
                f"${prediction['used_cost']:,.4f}",
                f"${dollars:,.4f}",
                dollars / prediction["used_cost"] if prediction["used_cost"] else math.nan,
            )
        )
    else:
        rows.append(
            (
                "cost",
                f"${prediction['cost_p50']:,.4f}",
                f"${dollars:,.4f}",
                dollars / prediction["cost_p50"] if prediction["cost_p50"] else math.nan,
            )
        )
    print(f"{'':6}{'predicted p50':>16}{'measured':>16}{'measured/predicted':>20}", file=out)
    for name, predicted, actual, ratio in rows:
        print(f"{name:6}{predicted:>16}{actual:>16}{ratio:>20.3f}", file=out)
    if "used_cost" in prediction and args.measured is None:
        print(
            f"cost = slot-seconds the launches used at ${price:.2f}/slot-hour (SEER's ledger); "
            f"holding the slots for every whole wave would bill ${prediction['cost_p50']:,.4f} "
            "(p50)",
            file=out,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-seer",
        description="Plan, simulate and profile deadline- and budget-bound tuning jobs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser(
        "plan", help="plan a job: min-cost (RubberBand) or max-accuracy (SEER)"
    )
    plan.add_argument("--deadline", type=_duration, required=True, help="e.g. 12h, 1h30m")
    plan.add_argument("--budget", type=_positive_float, help="dollars")
    plan.add_argument("--profile", type=Path, required=True, help="profile JSON")
    plan.add_argument("--objective", choices=("min-cost", "max-accuracy"), default="min-cost")
    plan.add_argument("--configs", type=int, default=81, help="configurations (max for SEER)")
    plan.add_argument("--reduction-factor", type=int, default=3)
    plan.add_argument("--max-epochs", type=int, default=27)
    plan.add_argument("--min-resource", type=int, default=1)
    plan.add_argument("--quantile", type=float, default=0.95, help="P(JCT <= deadline) to reach")
    plan.add_argument("--out", type=Path, help="write the plan JSON here")
    plan.add_argument("--png", type=Path, help="write the Gantt + cost chart here")
    _add_instance_arguments(plan)
    _add_cloud_arguments(plan)
    plan.set_defaults(handler=_cmd_plan)

    sim = commands.add_parser("simulate", help="Monte Carlo time and cost of a plan")
    sim.add_argument("--plan", type=Path, required=True)
    sim.add_argument("--profile", type=Path, required=True)
    sim.add_argument("--deadline", type=_duration)
    sim.add_argument("--png", type=Path)
    _add_cloud_arguments(sim)
    sim.set_defaults(handler=_cmd_simulate)

    prof = commands.add_parser(
        "profile",
        help="measure epoch and start-up times: a built-in gloo probe, or your trial on a backend",
    )
    prof.add_argument("--out", type=Path, required=True)
    prof.add_argument(
        "--backend",
        choices=("probe", "local"),
        default="probe",
        help="probe: a built-in torch gloo MLP; local: --script on LocalBackend",
    )
    prof.add_argument("--script", help="the training: file.py:function, script.py or module:fn")
    prof.add_argument(
        "--workers", type=_worker_list, nargs="+", default=[(1, 2)], help="e.g. 1 2 (or 1,2)"
    )
    prof.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=None,
        help="probe: epochs per launch (3); local: two counts to separate start-up (1 3)",
    )
    prof.add_argument("--repeats", type=int, default=4, help="probe: copies of the data per epoch")
    prof.add_argument("--launches", type=int, default=1, help="launches per worker count")
    prof.add_argument(
        "--contention",
        type=int,
        default=0,
        help="local: also time N one-worker launches at once (the profile's contention)",
    )
    prof.add_argument("--params", help="local: JSON hyperparameters (default: one seeded draw)")
    prof.add_argument(
        "--env", action="append", default=[], help="local: KEY=VALUE for every launch"
    )
    prof.add_argument("--slots", type=int, help="local: slots (default: the most used at once)")
    prof.add_argument("--log-dir", type=Path, help="local: keep launch logs here")
    prof.add_argument("--timeout", type=_duration, default=1800.0, help="local: per launch")
    prof.add_argument("--scaling-model", choices=("table", "amdahl"), default="table")
    prof.add_argument("--checkpoint-gb", type=_positive_float, default=0.0)
    prof.set_defaults(handler=_cmd_profile)

    rep = commands.add_parser("report", help="predicted vs measured time and cost")
    rep.add_argument("--plan", type=Path, help="plan JSON (default: the study's SEER plan)")
    rep.add_argument("--profile", type=Path, help="re-simulate with this profile")
    rep.add_argument("--measured", type=Path, help="JSON {wall_seconds, dollars}")
    rep.add_argument("--storage", help="Optuna storage URL of a SEER run")
    rep.add_argument("--study", help="study name in --storage")
    _add_cloud_arguments(rep)
    rep.set_defaults(handler=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-seer`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, sys.stdout))
    except InfeasiblePlanError as exc:
        print(f"optuna-seer: infeasible: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as exc:
        print(f"optuna-seer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
