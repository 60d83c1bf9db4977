"""``optuna-seer plan`` and ``optuna-seer simulate``: plan a job on priced instances, and
simulate a saved plan's time and cost.

``plan`` finds the cheapest plan meeting the deadline (RubberBand, ``--objective min-cost``) or
SEER's most configurations within the budget (``--objective max-accuracy``), prints it with
its simulated distribution and can write it (``--out``) and chart it (``--png``). With
``--spot-mix`` (min-cost) each stage goes on spot or on demand, whichever is cheapest while
the deadline holds; the chart marks each stage's market and a spot stage's expected recovery.

A new cluster's delay comes, first found first, from ``--provisioning FILE``, the profile's
measured ``provisioning`` (``optuna-seer profile --provisioning``/``--from-study``), or the
``--queue``/``--boot``/``--provisioning-cv`` constants; the commands print which.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import dataclasses
import json
import math
from pathlib import Path
import sys
from typing import Any, TextIO

from optuna_seer.cli.arguments import cloud_model
from optuna_seer.cli.extras import require_module
from optuna_seer.cli.pareto_command import run_pareto
from optuna_seer.cli.plan_choice import choose_plan
from optuna_seer.cli.plots import write_plan_chart
from optuna_seer.integration.prediction import prediction_summary
from optuna_seer.planning.budget import parse_duration
from optuna_seer.planning.plan import format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, SimulationResult, simulate
from optuna_seer.planning.spot import (
    SpotOffer,
    StageRecovery,
    expected_recovery,
    spot_cloud,
)
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.pricing.sources import (
    aws_spot_quotes,
    find_quote,
    read_price_csv,
    resolve_quote,
    sky_catalog_quote,
)
from optuna_seer.profiling.harness import load_profile, read_json_file

PLAN_FORMAT = 1
"""The ``format`` of the plan JSON ``optuna-seer plan --out`` writes."""


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
    (botocore's usual credentials; ``AWS_ENDPOINT_URL`` is honoured)."""
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


def add_spot_mix_argument(parser: argparse.ArgumentParser) -> None:
    """``--spot-mix`` (``plan`` and ``tune``)."""
    parser.add_argument(
        "--spot-mix",
        action="store_true",
        help="min-cost: each stage on spot or on demand (spot prices from --prices or the "
        "catalogs; reclaimed --spot-interruptions times per node-hour)",
    )


def spot_offers(args: argparse.Namespace, instances: tuple[PriceQuote, ...]) -> list[SpotOffer]:
    """``--spot-mix``: each on-demand instance paired with its spot quote, reclaimed
    ``--spot-interruptions`` times per node-hour."""
    if args.objective != "min-cost" or args.market != "on-demand":
        raise ValueError(
            "--spot-mix chooses the market per stage of a min-cost plan: use it with "
            "--objective min-cost and without --market spot."
        )
    if args.price_per_slot_hour is not None:
        raise ValueError(
            "--spot-mix plans on cloud instances, not --price-per-slot-hour local slots."
        )
    names = [q.instance_type for q in instances]
    if args.prices:
        table = read_price_csv(args.prices)
        spot = [find_quote(table, name, "spot", args.region) for name in names]
    else:
        spot = list(_spot_quotes(names, args.region, use_sky=not args.no_sky))
    return [SpotOffer(od, sq, args.spot_interruptions) for od, sq in zip(instances, spot)]


def profile_cloud(
    args: argparse.Namespace, profile: Profile, cloud: CloudModel, out: TextIO
) -> CloudModel:
    """``cloud`` with the profile's measured provisioning unless ``--provisioning`` gave
    one, printing where a new cluster's delays come from."""
    if getattr(args, "provisioning", None) is not None:
        source = f"from --provisioning {args.provisioning}"
    elif profile.provisioning is not None:
        cloud = dataclasses.replace(cloud, provisioning=profile.provisioning)
        source = "from the profile"
    else:
        source = "the --queue/--boot/--provisioning-cv constants"
    print(f"{cloud.provisioning_model.describe()}; {source}", file=out)
    return cloud


def spot_recovery(
    plan: ElasticPlan, profile: Profile, cloud: CloudModel, args: argparse.Namespace, out: TextIO
) -> tuple[StageRecovery, ...] | None:
    """Each stage's expected spot recovery, printed, when the plan has a spot stage."""
    if not any(s.instance.market == "spot" for s in plan.stages):
        return None
    recovery = expected_recovery(plan, profile, cloud, samples=args.samples, seed=args.seed)
    for index, (stage, r) in enumerate(zip(plan.stages, recovery)):
        if stage.instance.market == "spot":
            print(
                f"rung {index} on spot ({stage.nodes}×{stage.instance.instance_type}): "
                f"{r.reclaims:.2f} reclaims expected, recovery {format_seconds(r.seconds)} "
                f"and ${r.dollars:,.2f}",
                file=out,
            )
    return recovery


def print_prediction(result: SimulationResult, out: TextIO) -> None:
    """Two lines: the simulated time and cost, mean, p50 and p95."""
    print(
        f"time  mean {format_seconds(result.jct_mean)}  p50 {format_seconds(result.jct_p50)}  "
        f"p95 {format_seconds(result.jct_p95)}\n"
        f"cost  mean ${result.cost_mean:,.2f}  p50 ${result.cost_p50:,.2f}  "
        f"p95 ${result.cost_p95:,.2f}",
        file=out,
    )


def load_plan_file(path: Path) -> dict[str, Any]:
    """The record ``optuna-seer plan --out`` wrote (``plan``, and ``prediction`` etc.), its
    ``deadline_s`` and ``budget`` checked (``None`` or a valid figure)."""
    data = read_json_file(path, "plan", "a plan JSON ('optuna-seer plan --out' writes one)")
    if not isinstance(data, dict) or "plan" not in data:
        raise ValueError(f"{path} is not a plan written by 'optuna-seer plan --out'.")
    deadline = data.get("deadline_s")
    if deadline is not None:
        if isinstance(deadline, str):  # a number is written; "12h" is not a plan's
            raise ValueError(f"plan {path}: deadline_s={deadline!r:.40} must be seconds.")
        try:
            parse_duration(deadline, name=f"plan {path}: deadline_s")
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    budget = data.get("budget")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not math.isfinite(budget)
        or budget < 0
    ):
        raise ValueError(f"plan {path}: budget={budget!r:.40} must be dollars >= 0, or null.")
    return data


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer plan``: 0, or 1 when the cheapest plan meeting the deadline is over
    ``--budget``."""
    if args.png:
        require_module("matplotlib", "optuna-seer plan --png")
    profile = load_profile(args.profile)
    cloud = profile_cloud(args, profile, cloud_model(args), out)
    instances = _instances(args, profile)
    offers = spot_offers(args, instances) if getattr(args, "spot_mix", False) else []
    if getattr(args, "pareto", False):
        if offers:
            raise ValueError("--pareto compares SEER plans on one market: drop --spot-mix.")
        return run_pareto(
            args, profile, instances[0], cloud.queue_seconds + cloud.boot_seconds, out
        )
    deadline = args.deadline
    record: dict[str, Any] = {"format": PLAN_FORMAT, "objective": args.objective}
    if offers:
        cloud = spot_cloud(cloud, offers)  # as tune does: spot stages are reclaimed
        record["spot_rates"] = dict(cloud.spot_rates)
    choice = choose_plan(args, profile, instances, cloud, args.max_gpus, offers, out)
    plan = choice.plan
    over_budget = False
    result = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
    if choice.rubberband is not None:
        over_budget = args.budget is not None and choice.rubberband.stats.cost > args.budget
        if choice.rubberband.static_stats is not None:
            record["static_cost_mean"] = choice.rubberband.static_stats.cost
    if choice.seer is not None:
        record["seer_plan"] = choice.seer.to_dict()
    print(plan.table(result.stage_start_s, result.stage_end_s), file=out)
    print_prediction(result, out)
    quantile_s = result.jct_quantile(args.quantile)
    print(
        f"P(finish by deadline) = {result.probability_by(deadline):.3f}; "
        f"p{round(args.quantile * 100)} {format_seconds(quantile_s)} vs deadline "
        f"{format_seconds(deadline)}",
        file=out,
    )
    recovery = spot_recovery(plan, profile, cloud, args, out)
    record.update(
        deadline_s=deadline,
        budget=args.budget,
        quantile=args.quantile,
        plan=plan.to_dict(),
        prediction=prediction_summary(result),
    )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=out)
    if args.png:
        title = f"{args.objective} plan" + (" (spot/on-demand mix)" if offers else "")
        write_plan_chart(args.png, plan, result, deadline, args.budget, title, recovery)
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


def cmd_simulate(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer simulate``: a saved plan's simulated time and cost."""
    if args.png:
        require_module("matplotlib", "optuna-seer simulate --png")
    data = load_plan_file(args.plan)
    plan = ElasticPlan.from_dict(data["plan"])
    profile = load_profile(args.profile)
    cloud = profile_cloud(args, profile, cloud_model(args), out)
    rates = data.get("spot_rates")
    if isinstance(rates, dict) and not args.spot_interruptions:
        # The rates the plan was made with, unless --spot-interruptions gives another.
        try:
            cloud = dataclasses.replace(
                cloud, spot_rates=tuple((str(k), float(v)) for k, v in sorted(rates.items()))
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"plan {args.plan}: spot_rates={rates!r:.60}: {exc}") from None
    result = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
    print(plan.table(result.stage_start_s, result.stage_end_s), file=out)
    print_prediction(result, out)
    recovery = spot_recovery(plan, profile, cloud, args, out)
    deadline = args.deadline if args.deadline is not None else data.get("deadline_s")
    if deadline is not None:
        print(
            f"P(finish by {format_seconds(deadline)}) = {result.probability_by(deadline):.3f}",
            file=out,
        )
    if args.png:
        write_plan_chart(
            args.png, plan, result, deadline, data.get("budget"), "simulated plan", recovery
        )
        print(f"wrote {args.png}", file=out)
    return 0
