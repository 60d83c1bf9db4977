"""``optuna-seer report``: what a plan predicted next to what the run measured.

The measurement comes from ``--measured run.json`` or from a finished SEER run in storage
(``--storage URL --study NAME``: its deadline clock and ledger); the prediction from a plan
file, a re-simulation with ``--profile``, or the prediction stored with the run. A
re-simulation takes a new cluster's delays as ``plan`` and ``simulate`` do: from
``--provisioning``, else the profile's measured provisioning, else the constants, and its
first line says which.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, TextIO

from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer.cli.arguments import cloud_model
from optuna_seer.cli.plan_commands import load_plan_file, profile_cloud
from optuna_seer.integration.keys import STUDY_PLAN
from optuna_seer.integration.prediction import prediction_summary, stored_prediction
from optuna_seer.planning.plan import Plan, format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.simulator import simulate, used_gpu_seconds
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.profiling.harness import load_profile, parse_json

CUT_SHORT = "trials cut short"
"""The key :func:`measured_from_study` adds to the attrs it returns: trials the deadline or
the budget stopped."""
SLOWDOWN = "epoch time against the plan"
"""The key :func:`measured_from_study` adds for a ``study.optimize`` run: how many times the
plan's GPU-seconds the ledger charged, over the study and per rung, in words, as the budget
guard reads it (:meth:`~optuna_seer.integration.admission.SpendView.slowdown_text`)."""


def check_prediction(prediction: object, where: str) -> dict[str, Any]:
    """``prediction`` if it holds the figures the report compares: ``jct_p50_s`` > 0 and
    ``cost_p50`` >= 0 (and ``used_cost`` >= 0 where present), all finite numbers.

    Raises:
        ValueError: One is missing or invalid; the message names it and ``where`` it came from.
    """
    if not isinstance(prediction, dict):
        raise ValueError(
            f"{where}'s prediction={prediction!r:.60} must be a dict with jct_p50_s and "
            "cost_p50; pass --profile to simulate the plan instead."
        )
    for key, required, positive in (
        ("jct_p50_s", True, True),
        ("cost_p50", True, False),
        ("used_cost", False, False),
    ):
        if key not in prediction:
            if required:
                raise ValueError(
                    f"{where}'s prediction lacks {key}; it needs jct_p50_s and cost_p50 (pass "
                    "--profile to simulate the plan instead)."
                )
            continue
        value = prediction[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            raise ValueError(
                f"{where}'s prediction {key}={value!r:.40} must be a finite number "
                f"{'> 0' if positive else '>= 0'}."
            )
    return prediction


def load_measured_file(path: Path) -> tuple[float, float]:
    """(wall seconds, dollars) of a run, from ``{"wall_seconds": …, "dollars": …}``."""
    expected = '{"wall_seconds": 5400, "dollars": 12.5}'
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read --measured {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # UnicodeDecodeError
        raise ValueError(f"--measured {path} is not JSON ({exc}); write e.g. {expected}.") from None
    try:
        measured = parse_json(text, f"--measured {path}")
    except ValueError as exc:
        raise ValueError(f"{exc}; write e.g. {expected}.") from None
    try:
        wall, dollars = float(measured["wall_seconds"]), float(measured["dollars"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ValueError(
            f"--measured {path} must hold e.g. {expected}, not {measured!r:.60}."
        ) from None
    if not (math.isfinite(wall) and wall > 0 and math.isfinite(dollars) and dollars >= 0):
        raise ValueError(
            f"--measured {path}: wall_seconds={wall!r} must be > 0 and dollars={dollars!r} >= 0."
        )
    return wall, dollars


def measured_from_study(storage: str, study_name: str) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, GPU-seconds, study system attrs) of a finished SEER run, from its
    deadline clock and ledger in storage. The attrs also hold :data:`CUT_SHORT`."""
    from urllib.parse import urlsplit

    import optuna

    from optuna_seer.integration.admission import FinishedTrials, spend_view
    from optuna_seer.integration.keys import STUDY_MODE, STUDY_STARTED_AT, SYNCHRONOUS, stop_reason
    from optuna_seer.integration.ledger import spent_gpu_seconds
    from optuna_seer.integration.trial_gpus import implicit_placement_in
    from optuna_seer.storage.urls import open_existing_storage, redact_url

    shown = redact_url(storage)
    try:
        opened = open_existing_storage(storage, "--storage")
    except FileNotFoundError:
        raise  # its message names the path; nothing was created
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
    attrs = {**attrs, CUT_SHORT: cut}
    implicit = implicit_placement_in(attrs)
    spent = spent_gpu_seconds(trials, end, implicit)
    if STUDY_PLAN in attrs and attrs.get(STUDY_MODE) != SYNCHRONOUS:
        plan = Plan.from_dict(attrs[STUDY_PLAN])
        finished = FinishedTrials(opened, len(plan.rungs) - 1)
        view = spend_view(plan, finished, finished.gather(plan, trials, implicit), end, implicit)
        attrs[SLOWDOWN] = view.slowdown_text()
    return end - float(attrs[STUDY_STARTED_AT]), spent, attrs


def _study_prediction(
    args: argparse.Namespace, attrs: dict[str, Any], out: TextIO
) -> tuple[dict[str, Any], str]:
    """The prediction for a run read from storage, and where it came from."""
    stored = stored_prediction(attrs)
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
        cloud = profile_cloud(args, profile, cloud_model(args), out)
        result = simulate(plan, profile, cloud, samples=args.samples, seed=args.seed)
        used = used_gpu_seconds(plan, profile) * quote.dollars_per_second
        return {**prediction_summary(result), "used_cost": used}, f"simulated with {args.profile}"
    source = stored.get("profile", {}).get("source", "a profile")
    return stored, f"the simulation stored with the run (profile: {source})"


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer report``: a table of time and cost, predicted p50 vs measured."""
    prediction: dict[str, Any] | None
    if args.plan is None:
        if not (args.storage and args.study):
            raise ValueError("give --plan plan.json, or --storage URL --study NAME of a SEER run.")
        wall, gpu_seconds, attrs = measured_from_study(args.storage, args.study)
        prediction, source = _study_prediction(args, attrs, out)
        prediction = check_prediction(prediction, f"study {args.study!r}")
        if STUDY_PLAN not in attrs:
            raise ValueError(f"study {args.study!r} holds no SEER plan; pass --plan plan.json.")
        price = Plan.from_dict(attrs[STUDY_PLAN]).price_per_gpu_second * 3600.0
        dollars = gpu_seconds * price / 3600.0
        print(f"study {args.study!r}: predicted by {source}", file=out)
        if attrs[CUT_SHORT]:
            print(
                f"note: {attrs[CUT_SHORT]} trial(s) were stopped by the deadline or the budget, "
                "so the run did less work than the plan predicted.",
                file=out,
            )
        if SLOWDOWN in attrs:
            print(attrs[SLOWDOWN], file=out)
    else:
        data = load_plan_file(args.plan)
        prediction = data.get("prediction")
        elastic = ElasticPlan.from_dict(data["plan"])
        if args.profile is not None:
            profile = load_profile(args.profile)
            cloud = profile_cloud(args, profile, cloud_model(args), out)
            result = simulate(elastic, profile, cloud, samples=args.samples, seed=args.seed)
            prediction = prediction_summary(result)
        if prediction is None:
            raise ValueError(f"{args.plan} holds no prediction; pass --profile to simulate it.")
        prediction = check_prediction(prediction, f"plan {args.plan}")
        price = elastic.stages[0].instance.dollars_per_gpu_hour
        if args.measured is not None:
            wall, dollars = load_measured_file(args.measured)
        elif args.storage and args.study:
            wall, gpu_seconds, _ = measured_from_study(args.storage, args.study)
            dollars = gpu_seconds * price / 3600.0
        else:
            raise ValueError("give --measured run.json, or --storage URL --study NAME.")
    _print_comparison(prediction, wall, dollars, price, per_use=args.measured is None, out=out)
    return 0


def _print_comparison(
    prediction: dict[str, Any],
    wall: float,
    dollars: float,
    price: float,
    *,
    per_use: bool,
    out: TextIO,
) -> None:
    """The table: predicted p50 and measured time and cost, and their ratio. ``per_use``
    (measured by the ledger) compares the cost with the per-use prediction where there is one."""
    rows = [
        (
            "time",
            format_seconds(prediction["jct_p50_s"]),
            format_seconds(wall),
            wall / prediction["jct_p50_s"],
        )
    ]
    by_use = "used_cost" in prediction and per_use
    # The ledger charges what launches use; compare it with the same quantity.
    predicted_cost = prediction["used_cost"] if by_use else prediction["cost_p50"]
    rows.append(
        (
            "cost",
            f"${predicted_cost:,.4f}",
            f"${dollars:,.4f}",
            dollars / predicted_cost if predicted_cost else math.nan,
        )
    )
    print(f"{'':6}{'predicted p50':>16}{'measured':>16}{'measured/predicted':>20}", file=out)
    for name, predicted, actual, ratio in rows:
        print(f"{name:6}{predicted:>16}{actual:>16}{ratio:>20.3f}", file=out)
    if by_use:
        print(
            f"cost = slot-seconds the launches used at ${price:.2f}/slot-hour (SEER's ledger); "
            f"holding the slots for every whole wave would bill ${prediction['cost_p50']:,.4f} "
            "(p50)",
            file=out,
        )
