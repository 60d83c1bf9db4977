"""``optuna-seer``: plan, simulate, profile and report from the command line.

Examples::

    optuna-seer profile --out profile.json --workers 1,2
    optuna-seer profile --backend local --script examples/lightning_digits.py:train \\
        --workers 1 2 --epochs 1 3 --contention 2 --out profile.json
    optuna-seer profile --update profile.json --from-study sqlite:///runs.db \\
        --study-name last-week --out profile.json
    optuna-seer plan --deadline 12h --budget 400 --profile profile.json --objective min-cost \\
        --configs 81 --reduction-factor 3 --max-epochs 27 --instance p3.2xlarge --png plan.png
    optuna-seer simulate --plan plan.json --profile profile.json --samples 5000
    optuna-seer report --plan plan.json --measured run.json
    optuna-seer report --storage sqlite:///runs/seer.db --study my-study
    optuna-seer tune --objective min-cost --deadline 2h --budget 50 --profile profile.json \\
        --backend local --script examples/lightning_digits.py:train --price-per-slot-hour 3

This module holds the parser and the dispatch; each command lives in its own module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys
from typing import NoReturn

from optuna_seer.cli.arguments import (
    MAX_LOCAL_WORKERS,
    add_cloud_arguments,
    add_instance_arguments,
    bounded_int,
    duration,
    positive_float,
    worker_list,
)
from optuna_seer.cli.extras import MissingExtraError
from optuna_seer.cli.plan_commands import add_spot_mix_argument, cmd_plan, cmd_simulate
from optuna_seer.cli.profile_command import add_provisioning_arguments, cmd_profile
from optuna_seer.cli.provisioning_command import add_provisioning_command
from optuna_seer.cli.report_command import cmd_report
from optuna_seer.cli.tune_command import add_tune_command
from optuna_seer.planning.seer import InfeasiblePlanError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), no usage."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _add_plan_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    plan = commands.add_parser(
        "plan", help="plan a job: min-cost (RubberBand) or max-accuracy (SEER)"
    )
    plan.add_argument("--deadline", type=duration, required=True, help="e.g. 12h, 1h30m")
    plan.add_argument("--budget", type=positive_float, help="dollars")
    plan.add_argument("--profile", type=Path, required=True, help="profile JSON")
    plan.add_argument(
        "--objective",
        choices=("min-cost", "max-accuracy"),
        default="min-cost",
        help="min-cost: the cheapest plan that meets the deadline (RubberBand); max-accuracy: "
        "the best expected accuracy within deadline and budget (SEER) (default: %(default)s)",
    )
    plan.add_argument(
        "--configs",
        type=int,
        default=81,
        help="configurations (max for SEER) (default: %(default)s)",
    )
    plan.add_argument(
        "--reduction-factor",
        type=int,
        default=3,
        metavar="N",
        help="each rung keeps 1/N of its trials (default: %(default)s)",
    )
    plan.add_argument(
        "--max-epochs",
        type=int,
        default=27,
        help="epochs a configuration trains at most (default: %(default)s)",
    )
    plan.add_argument(
        "--min-resource",
        type=int,
        default=1,
        help="epochs before the first elimination (default: %(default)s)",
    )
    plan.add_argument(
        "--quantile",
        type=float,
        default=0.95,
        help="P(JCT <= deadline) to reach (default: %(default)s)",
    )
    plan.add_argument("--out", type=Path, help="write the plan JSON here")
    plan.add_argument("--png", type=Path, help="write the Gantt + cost chart here")
    plan.add_argument(
        "--pareto",
        action="store_true",
        help="print (and with --png chart) the front of expected accuracy vs dollars and vs "
        "deadline over SEER plans",
    )
    plan.add_argument(
        "--curves", type=Path, help="--pareto: recorded learning curves (JSON) to score plans"
    )
    add_spot_mix_argument(plan)
    add_instance_arguments(plan)
    add_cloud_arguments(plan)
    plan.set_defaults(handler=cmd_plan)

    sim = commands.add_parser("simulate", help="Monte Carlo time and cost of a plan")
    sim.add_argument("--plan", type=Path, required=True)
    sim.add_argument("--profile", type=Path, required=True)
    sim.add_argument("--deadline", type=duration)
    sim.add_argument("--png", type=Path)
    add_cloud_arguments(sim)
    sim.set_defaults(handler=cmd_simulate)


def _add_profile_command(commands: argparse._SubParsersAction[_Parser]) -> None:
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
        "--workers", type=worker_list, nargs="+", default=[(1, 2)], help="e.g. 1 2 (or 1,2)"
    )
    prof.add_argument(
        "--epochs",
        type=bounded_int(1, 100_000),
        nargs="+",
        default=None,
        help="probe: epochs per launch (3); local: two counts to separate start-up (1 3)",
    )
    prof.add_argument(
        "--repeats",
        type=bounded_int(1, 10_000),
        default=4,
        help="probe: copies of the data per epoch",
    )
    prof.add_argument(
        "--launches", type=bounded_int(1, 1000), default=1, help="launches per worker count"
    )
    prof.add_argument(
        "--contention",
        type=bounded_int(0, MAX_LOCAL_WORKERS),
        default=0,
        help="local: also time N one-worker launches at once (the profile's contention)",
    )
    prof.add_argument("--params", help="local: JSON hyperparameters (default: one seeded draw)")
    prof.add_argument(
        "--env", action="append", default=[], help="local: KEY=VALUE for every launch"
    )
    prof.add_argument(
        "--slots",
        type=bounded_int(1, MAX_LOCAL_WORKERS),
        help="local: slots (default: the most used at once)",
    )
    prof.add_argument("--log-dir", type=Path, help="local: keep launch logs here")
    prof.add_argument("--timeout", type=duration, default=1800.0, help="local: per launch")
    prof.add_argument("--scaling-model", choices=("table", "amdahl"), default="table")
    prof.add_argument("--checkpoint-gb", type=positive_float, default=0.0)
    add_provisioning_arguments(prof)
    prof.set_defaults(handler=cmd_profile)


def _add_report_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    rep = commands.add_parser("report", help="predicted vs measured time and cost")
    rep.add_argument("--plan", type=Path, help="plan JSON (default: the study's SEER plan)")
    rep.add_argument("--profile", type=Path, help="re-simulate with this profile")
    rep.add_argument("--measured", type=Path, help="JSON {wall_seconds, dollars}")
    rep.add_argument("--storage", help="Optuna storage URL of a SEER run")
    rep.add_argument("--study", help="study name in --storage")
    add_cloud_arguments(rep)
    rep.set_defaults(handler=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """The ``optuna-seer`` parser; each sub-command's ``handler`` runs it."""
    parser = _Parser(
        prog="optuna-seer",
        description="Plan, simulate and profile deadline- and budget-bound tuning jobs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_plan_command(commands)
    _add_profile_command(commands)
    _add_report_command(commands)
    add_tune_command(commands)
    add_provisioning_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-seer`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, sys.stdout))
    except InfeasiblePlanError as exc:
        print(f"optuna-seer: infeasible: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, MissingExtraError) as exc:
        print(f"optuna-seer {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a profiling launch failed or timed out: not the input
        print(f"optuna-seer {args.command}: failed: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (a path or a value it quotes may hold line breaks)."""
    return " ".join(str(exc).splitlines())


if __name__ == "__main__":
    sys.exit(main())
