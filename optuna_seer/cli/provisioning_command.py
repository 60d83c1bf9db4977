"""``optuna-seer provisioning``: the provisioning delays past runs measured, for the next plan.

Reads the queue, boot and setup seconds that a cloud backend recorded for every launch
that brought up a new cluster (in the trials' ``seer:launches``) of one or more studies,
prints their distribution and writes it (``--out``) as the file that ``plan``, ``simulate``,
``report`` and ``tune`` take with ``--provisioning FILE`` in place of the ``--queue``/
``--boot``/``--provisioning-cv`` constants.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from optuna_seer.execution.provisioning_samples import measured_provisioning
from optuna_seer.storage.urls import open_existing_storage


def add_provisioning_command(commands: Any) -> None:
    """Register ``provisioning`` on the ``optuna-seer`` sub-command parsers."""
    prov = commands.add_parser(
        "provisioning", help="measured queue/boot/setup delays of past launches, for plans"
    )
    prov.add_argument("--storage", required=True, help="Optuna storage URL of past runs")
    prov.add_argument(
        "--study", action="append", required=True, help="a study whose launches count (repeat)"
    )
    prov.add_argument("--out", type=Path, help="write the distribution here (JSON)")
    prov.set_defaults(handler=cmd_provisioning)


def cmd_provisioning(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer provisioning``: print (and write) the measured distribution."""
    model = measured_provisioning(open_existing_storage(args.storage, "--storage"), args.study)
    print(model.describe(), file=out)
    if args.out:
        Path(args.out).write_text(json.dumps(model.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out} (pass it to plan/simulate/tune with --provisioning)", file=out)
    return 0
