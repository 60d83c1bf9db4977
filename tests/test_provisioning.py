"""Measured provisioning: launch records → a delay distribution → the simulator and the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.cli.main import main
from optuna_seer.execution.provisioning_samples import measured_provisioning, provisioning_samples
from optuna_seer.integration.keys import TRIAL_LAUNCHES
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.provisioning import ProvisioningModel
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

Q = PriceQuote("g1", "V100", 1, 3.6)
PLAN = ElasticPlan((Stage(2, 1, 1, Q, 2),))
PROFILE = Profile(epoch_seconds=100, scaling="linear")


def test_measured_delays_are_resampled_whole_and_round_trip() -> None:
    model = ProvisioningModel.measured(
        [{"queue_s": 5, "boot_s": 100, "setup_s": 20}, {"queue_s": 50, "boot_s": 300}]
    )
    assert model.samples == ((5.0, 120.0), (50.0, 300.0))
    assert (model.mean_queue_s, model.mean_boot_s) == (27.5, 210.0)
    queue, boot = model.draw(np.random.default_rng(1), 200)
    assert set(zip(queue.tolist(), boot.tolist())) == {(5.0, 120.0), (50.0, 300.0)}
    assert ProvisioningModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    assert "2 measured launches" in model.describe()
    with pytest.raises(ValueError, match="needs queue_s and boot_s"):
        ProvisioningModel.measured([{"boot_s": 3}])
    with pytest.raises(ValueError, match="no provisioning samples"):
        ProvisioningModel.measured([])
    with pytest.raises(ValueError, match="unknown keys"):
        ProvisioningModel.from_dict({"boot": 3})


def test_the_simulator_draws_a_new_clusters_delay_from_the_measured_launches() -> None:
    model = ProvisioningModel.measured(
        [{"queue_s": 10, "boot_s": 200, "setup_s": 0}, {"queue_s": 30, "boot_s": 600}]
    )
    result = simulate(PLAN, PROFILE, CloudModel(provisioning=model), samples=400)
    assert set(np.round(np.asarray(result.jct) - 100.0, 6)) == {210.0, 630.0}
    cloud = CloudModel(provisioning=model)
    assert (cloud.queue_seconds, cloud.boot_seconds) == (20.0, 400.0)
    # A parametric model is the CLI constants, drawn as before.
    constants = CloudModel(queue_seconds=60, boot_seconds=120, provisioning_cv=0.3)
    same = CloudModel(provisioning=ProvisioningModel(60.0, 120.0, 0.3))
    assert (
        simulate(PLAN, PROFILE, constants, samples=50).jct
        == simulate(PLAN, PROFILE, same, samples=50).jct
    )


def _study_with_launches(url: str, name: str, records: list[dict[str, object]]) -> None:
    study = optuna.create_study(storage=url, study_name=name)
    trial = study.ask()
    storage_of(study).set_trial_system_attr(trial_id_of(trial), TRIAL_LAUNCHES, records)
    study.tell(trial, 1.0)


def test_samples_are_read_from_the_studies_launch_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _study_with_launches(
        url,
        "a",
        [
            {"queue_s": 12.0, "boot_s": 95.0, "setup_s": 20.0},
            {"queue_s": 0.2, "boot_s": 0.0, "setup_s": 0.0},  # placed on a cluster already up
            {"queue_s": None, "boot_s": None, "setup_s": None},  # a local launch
        ],
    )
    _study_with_launches(url, "b", [{"queue_s": 40.0, "boot_s": 130.0, "setup_s": None}])
    _study_with_launches(url, "local", [{"queue_s": None, "boot_s": None}])
    study = optuna.load_study(study_name="a", storage=url)
    assert provisioning_samples(study.trials) == [
        {"queue_s": 12.0, "boot_s": 95.0, "setup_s": 20.0}
    ]
    model = measured_provisioning(url, ["a", "b"])
    assert model.samples == ((12.0, 115.0), (40.0, 130.0))
    with pytest.raises(ValueError, match="no launch of"):
        measured_provisioning(url, ["local"])
    with pytest.raises(ValueError, match="'nope' is not in the storage"):
        measured_provisioning(url, ["nope"])


def test_the_next_plan_uses_the_measured_distribution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _study_with_launches(url, "past", [{"queue_s": 600.0, "boot_s": 1800.0, "setup_s": 600.0}])
    out = tmp_path / "provisioning.json"
    assert main(["provisioning", "--storage", url, "--study", "past", "--out", str(out)]) == 0
    assert "1 measured launches" in capsys.readouterr().out
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"epoch_seconds": 60, "scaling": "linear"}))
    plan = [
        "plan", "--deadline=24h", f"--profile={profile}", "--configs=9", "--max-epochs=9",
        "--price-per-slot-hour=3", "--max-gpus=9", "--samples=50", "--objective=min-cost",
    ]  # fmt: skip
    assert main(plan) == 0
    constants = capsys.readouterr().out
    assert main([*plan, f"--provisioning={out}"]) == 0
    measured = capsys.readouterr().out
    assert constants != measured
    # One cluster at least: 3,000 s of measured provisioning (queue + boot + setup) in p50.
    assert "1 measured launches" in measured and "from --provisioning" in measured
    p50 = measured.split("time  mean")[1].split("p50 ")[1].split()[0]
    hours, minutes, seconds = (int(part) for part in p50.split(":"))
    assert hours * 3600 + minutes * 60 + seconds >= 3000
