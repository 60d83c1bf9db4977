"""Measured provisioning delays: the queue, boot and setup seconds a study's launches took.

A cloud backend (``SkyPilotBackend``) records, with every launch in the trial's
``seer:launches`` attribute, ``queue_s`` (waiting for placement and capacity), ``boot_s``
(provisioning the cluster's instances) and ``setup_s`` (file sync and the cluster's setup).
A launch that brought up a new cluster has ``boot_s > 0``; one placed on a cluster already
up has ``0.0`` (nothing was provisioned) and one on a backend that does not measure them
``None``. :func:`provisioning_samples` gathers the new-cluster launches of one or more
studies, and :func:`measured_provisioning` makes them the
:class:`~optuna_seer.planning.provisioning.ProvisioningModel` the simulator and the planner
draw a new cluster's delay from (``optuna-seer provisioning`` writes it to a file that
``plan``/``simulate``/``tune --provisioning FILE`` read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import math
from typing import Any

import optuna

from optuna_seer.integration.keys import TRIAL_LAUNCHES
from optuna_seer.planning.provisioning import ProvisioningModel

__all__ = ["measured_provisioning", "provisioning_samples"]


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def provisioning_samples(trials: Iterable[optuna.trial.FrozenTrial]) -> list[dict[str, float]]:
    """``{"queue_s", "boot_s", "setup_s"}`` of every launch that provisioned a new cluster
    (``boot_s > 0``), in trial then launch order. Launches without the figures are skipped.

    Example:
        >>> from optuna.trial import create_trial
        >>> trial = create_trial(value=1.0, system_attrs={"seer:launches": [
        ...     {"queue_s": 12.0, "boot_s": 95.0, "setup_s": 20.0},
        ...     {"queue_s": 0.5, "boot_s": 0.0, "setup_s": 0.0},     # reused a cluster
        ...     {"queue_s": None, "boot_s": None, "setup_s": None}]})  # not measured
        >>> provisioning_samples([trial])
        [{'queue_s': 12.0, 'boot_s': 95.0, 'setup_s': 20.0}]
    """
    samples = []
    for trial in trials:
        records = trial.system_attrs.get(TRIAL_LAUNCHES, [])
        if not isinstance(records, list):
            continue
        for record in records:
            if not isinstance(record, dict):
                continue
            boot = _seconds(record.get("boot_s"))
            queue = _seconds(record.get("queue_s"))
            if boot is None or boot <= 0 or queue is None:
                continue
            setup = _seconds(record.get("setup_s")) or 0.0
            samples.append({"queue_s": queue, "boot_s": boot, "setup_s": setup})
    return samples


def measured_provisioning(
    storage: str | optuna.storages.BaseStorage, study_names: Sequence[str]
) -> ProvisioningModel:
    """The provisioning delays measured by ``study_names``' launches in ``storage``.

    Raises:
        ValueError: A study does not exist, or none of their launches measured a new
            cluster's provisioning (the message says where such launches come from).
    """
    if not study_names:
        raise ValueError("give at least one study name whose launches measured provisioning.")
    samples = []
    for name in study_names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            known = optuna.get_all_study_names(storage)
            raise ValueError(
                f"study {name!r} is not in the storage; it holds {known[:10]}."
            ) from None
        samples.extend(provisioning_samples(study.get_trials(deepcopy=False)))
    if not samples:
        raise ValueError(
            f"no launch of {list(study_names)} provisioned a new cluster with measured "
            "queue_s/boot_s (a cloud backend such as SkyPilotBackend records them; local and "
            "replayed launches do not)."
        )
    return ProvisioningModel.measured(samples)
