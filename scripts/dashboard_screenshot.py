"""Screenshot what optuna-dashboard shows of SEER (docs/dashboard-*.png).

Runs two small real studies into one SQLite file: ``study.optimize`` with the SEER pair (a toy
objective reporting 9 epochs, about 10 s) and the real ``ElasticTuner`` on a
``ReplayBackend`` (recorded curves on a simulated clock, about 5 s) whose report and timeline
PNG are published with :func:`optuna_seer.integration.dashboard.publish_report`. Then it
serves the file with the real ``optuna-dashboard`` on 127.0.0.1 only and screenshots a trial
page, a study page and a study note with headless Chromium (Debian:
``apt-get install -y chromium``).

Usage (from the repository root, with the dev install)::

    .venv/bin/python scripts/dashboard_screenshot.py --out docs
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import optuna

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmarks.seer_arm names the replayed training program

from optuna_seer import Budget, SeerPruner, SeerSampler, Workload  # noqa: E402
from optuna_seer._install import install_hint  # noqa: E402
from optuna_seer._optuna import study_id_of  # noqa: E402
from optuna_seer._ports import free_port  # noqa: E402
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend  # noqa: E402
from optuna_seer.cli.plots import plot_timeline  # noqa: E402
from optuna_seer.execution.report import format_report  # noqa: E402
from optuna_seer.execution.tuner import ElasticTuner  # noqa: E402
from optuna_seer.integration.dashboard import publish_report  # noqa: E402
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule  # noqa: E402
from optuna_seer.planning.plan import Plan  # noqa: E402


def optimize_study(url: str) -> optuna.Study:
    """``study.optimize`` with the SEER pair: 9 configurations, 3 rungs (1, 3, 9 epochs)."""
    workload = Workload(epoch_seconds=10.0, scaling="linear", max_epochs=9)
    pruner = SeerPruner(
        budget=Budget(deadline="10m", dollars=0.3, price_per_gpu_hour=3.0),
        workload=workload,
        reduction_factor=3,
        max_configs=9,
    )
    study = optuna.create_study(
        storage=url,
        study_name="seer-optimize",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=0)),
        pruner=pruner,
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        accuracy = 0.0
        for epoch in range(1, workload.max_epochs + 1):
            time.sleep(0.05)  # an "epoch"
            accuracy = 1 - 1 / (1 + 100 * lr * epoch)
            trial.report(accuracy, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study.optimize(objective, n_trials=20)
    publish_report(study)  # the standing against deadline and budget, SEER's pick
    return study


def elastic_study(url: str, work: Path) -> optuna.Study:
    """The real ElasticTuner on recorded curves (simulated clock): 4 trials x 1 epoch on 1
    worker, then the best 2 to 3 epochs on 2 workers each; report and timeline published."""
    curves = [
        RecordedCurve(val_acc=tuple(0.1 * c + 0.01 * e for e in range(3)), test_acc=(0.5,) * 3)
        for c in range(1, 5)
    ]
    workload = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=3, startup_seconds=20.0)
    price = 3.0 / 3600
    plan = Plan(
        rungs=schedule(
            [RungShape(4, 1, 1), RungShape(2, 3, 2)], workload, price, ClusterLimits(max_gpus=4)
        ),
        reduction_factor=2,
        deadline_s=240.0,
        budget_dollars=1.0,
        price_per_gpu_second=price,
        min_marginal_speedup=0.2,
    )
    storage = optuna.storages.RDBStorage(url)
    backend = ReplayBackend(curves, "linear", 60.0, slots=4, startup_seconds=20.0, storage=storage)
    study = optuna.create_study(
        storage=storage,
        study_name="seer-elastic-replay",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(0), clock=backend.now),
        pruner=SeerPruner(plan=plan, clock=backend.now),
    )
    result = ElasticTuner(
        study,
        plan,
        backend=backend,
        train="benchmarks.seer_arm:replayed_training",
        checkpoints=str(work / "ckpt"),
        search_space=lambda trial: trial.suggest_int("config_id", 0, len(curves) - 1),
        workload=workload,
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
        drift_tolerance=math.inf,
    ).run()
    publish_report(
        study,
        format_report(result),
        best_trial=result.best_trial,
        timeline=plot_timeline(result, work / "timeline.png"),
        artifact_dir=work / "artifacts",
    )
    return study


def wait_for(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def screenshot(browser: str, url: str, path: Path, size: str) -> None:
    """Headless Chromium: load ``url``, let the page's scripts run, save a PNG."""
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            "--virtual-time-budget=20000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        timeout=180,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"wrote {path} ({path.stat().st_size:,} bytes) from {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go")
    parser.add_argument("--browser", default="chromium", help="headless Chromium to run")
    args = parser.parse_args()
    browser = shutil.which(args.browser)
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if browser is None or dashboard is None:
        sys.exit(
            "needs chromium (apt-get install -y chromium) and optuna-dashboard "
            f"({install_hint('dashboard', 'optuna-dashboard')})."
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="seer-dashboard-") as scratch:
        work = Path(scratch)
        url = f"sqlite:///{work / 'seer.db'}"
        optimized = optimize_study(url)
        elastic = elastic_study(url, work)
        port = free_port()
        serve = [dashboard, url, "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [*serve, "--artifact-dir", str(work / "artifacts")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/api/meta")
            pruned = next(
                t.number
                for t in optimized.trials
                if t.state == optuna.trial.TrialState.PRUNED and t.user_attrs.get("seer.rung")
            )
            args.out.mkdir(parents=True, exist_ok=True)
            pages = {
                "dashboard-trial.png": (
                    f"/dashboard/studies/{study_id_of(optimized)}/trials?numbers={pruned}",
                    "1400,760",
                ),
                "dashboard-study.png": (
                    f"/dashboard/studies/{study_id_of(optimized)}",
                    "1400,1800",
                ),
                "dashboard-note.png": (
                    f"/dashboard/studies/{study_id_of(elastic)}/note",
                    "1900,1700",
                ),
            }
            for name, (page, size) in pages.items():
                screenshot(browser, base + page, args.out / name, size)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
