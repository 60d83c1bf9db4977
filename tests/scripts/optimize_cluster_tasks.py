"""Run SkyPilot's own optimizer (what ``sky launch --dryrun`` runs) on the cluster tasks
SkyPilotBackend builds, in this process: no API server. Prints one JSON line per shape.

Needs HOME with a hand-written catalog and AWS credentials SkyPilot's ``sky check`` accepts
(the test points them at a local moto server).
"""

from __future__ import annotations

import json
import sys

from sky import optimizer
from sky.utils import common

from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.planning.placement import ClusterShape


def main() -> None:
    backend = SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["aws"],
        use_spot=True,
        checkpoints="s3://bucket/seer",
        storage="postgresql://u:p@db/optuna",
        workdir=sys.argv[1],
    )
    for nodes in (1, 2):
        task = backend.cluster_task(ClusterShape(nodes, 8))
        dag = optimizer.Optimizer.optimize(
            _dag(task), minimize=common.OptimizeTarget.COST, quiet=True
        )
        best = dag.tasks[0].best_resources
        print(
            json.dumps(
                {
                    "nodes": nodes,
                    "instance": best.instance_type,
                    "spot": best.use_spot,
                    "hourly": best.get_cost(3600) * nodes,
                    "estimate": backend.hourly_price(ClusterShape(nodes, 8))[0],
                }
            )
        )


def _dag(task: object) -> object:
    import sky

    dag = sky.Dag()
    dag.add(task)
    return dag


if __name__ == "__main__":
    main()
