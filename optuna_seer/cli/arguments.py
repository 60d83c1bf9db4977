"""Argument types and shared option groups of the ``optuna-seer`` sub-commands.

The types turn bad text into an :class:`argparse.ArgumentTypeError` that names the value and
what is valid; the groups (cloud model, instances and prices) are shared by several commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import math
from pathlib import Path

from optuna_seer.planning.budget import check_price_per_hour, parse_duration
from optuna_seer.planning.provisioning import ProvisioningModel
from optuna_seer.planning.simulator import CloudModel

MAX_LOCAL_WORKERS = 1024
"""The most worker processes (or slots) ``optuna-seer profile`` starts on this machine."""


def positive_float(text: str) -> float:
    """A finite number >= 0 (dollars, gigabytes, rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 and finite")
    return value


def price_per_hour(text: str) -> float:
    """Dollars per hour: a number > 0 and at most a million."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return check_price_per_hour(value, "price")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} must be a whole number from {low:,} to {high:,}"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def positive_int(text: str) -> int:
    """A whole number >= 1 (samples, GPUs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return value


def duration(text: str) -> float:
    """Seconds, from ``12h``, ``1h30m``, ``90s`` (or ``0``)."""
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text, name="duration")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def worker_list(text: str) -> tuple[int, ...]:
    """Worker counts: ``1,2`` (or one count per argument with ``nargs``)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,4") from None
    if not counts or any(not 1 <= c <= MAX_LOCAL_WORKERS for c in counts):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} must be worker counts from 1 to {MAX_LOCAL_WORKERS}, e.g. 1 2"
        )
    return counts


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    """The cloud model's options (read back by :func:`cloud_model`) and the Monte Carlo's."""
    group = parser.add_argument_group("cloud model")
    group.add_argument("--queue", type=duration, default=60.0, help="mean queueing delay (60s)")
    group.add_argument("--boot", type=duration, default=120.0, help="mean instance start-up (2m)")
    group.add_argument("--provisioning-cv", type=positive_float, default=0.3)
    group.add_argument(
        "--provisioning",
        type=Path,
        help="measured delays ('optuna-seer provisioning --out'); replaces --queue/--boot",
    )
    group.add_argument(
        "--billing", default="per-second", help="exact | per-second | per-minute | per-hour | …"
    )
    group.add_argument("--transfer-per-gb", type=positive_float, default=0.0)
    group.add_argument("--storage-per-gb-month", type=positive_float, default=0.0)
    group.add_argument(
        "--spot-interruptions", type=positive_float, default=0.0, help="per node-hour"
    )
    group.add_argument("--samples", type=positive_int, default=1000, help="Monte Carlo samples")
    group.add_argument("--seed", type=int, default=0)


def add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    """Which instance types to plan on, and where their prices come from."""
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
        type=price_per_hour,
        help="plan on local worker slots at this $/h each (instead of instance types)",
    )
    group.add_argument("--no-sky", action="store_true", help="do not read SkyPilot's catalog")
    group.add_argument(
        "--max-gpus",
        type=positive_int,
        default=64,
        help="quota: GPUs at once (default: %(default)s)",
    )


def cloud_model(args: argparse.Namespace) -> CloudModel:
    """The :class:`CloudModel` of the options :func:`add_cloud_arguments` added."""
    provisioning = None
    if getattr(args, "provisioning", None) is not None:
        try:
            data = json.loads(Path(args.provisioning).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"--provisioning {args.provisioning}: not JSON: {exc}") from None
        provisioning = ProvisioningModel.from_dict(data)
    return CloudModel(
        queue_seconds=args.queue,
        boot_seconds=args.boot,
        provisioning_cv=args.provisioning_cv,
        billing=args.billing,
        transfer_dollars_per_gb=args.transfer_per_gb,
        storage_dollars_per_gb_month=args.storage_per_gb_month,
        spot_interruptions_per_node_hour=args.spot_interruptions,
        provisioning=provisioning,
    )
