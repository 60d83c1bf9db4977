"""The SkyPilot tasks of a trial: resources, the template's YAML, the node environment, secrets.

:class:`TaskBuilder` turns the trial template (``launchers/trial.yaml``, shipped in the
package as ``optuna_seer/launchers/trial.yaml``, by default) into the kinds of ``sky.Task``
:class:`~optuna_seer.backends.skypilot.SkyPilotBackend` hands to SkyPilot: a *boot task* and
a *cluster task* (two ``sky launch`` calls: provision, then set up a cluster; no ``run``) and a
*trial task* (``sky exec``: one trial on its slot of a cluster). The study URL (it may hold an
RDB password), the study's checkpoint key, and any variable that holds a credential by its
name or its value (:func:`optuna_seer._secrets.is_secret`) reach the nodes as SkyPilot
``secrets`` (redacted in every task YAML SkyPilot keeps or shows), not ``envs``: see
:func:`is_secret_env`.

Every cluster task mounts the driver's own optuna-seer on its nodes (a wheel and a
``requirements.txt`` pinning the driver's Optuna, from
:mod:`optuna_seer.backends.skypilot.packages`) at :data:`NODE_PACKAGES`; the template's
``setup`` installs from there, never optuna-seer from a package index.

``sky`` and ``yaml`` are imported when a builder is made, not when this module is.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Mapping, Sequence
import copy
from dataclasses import replace
import functools
import importlib.resources
import os
from pathlib import Path
import shlex
import shutil
import tempfile
from typing import Any, Literal

from optuna_seer._secrets import is_secret
from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.backends.skypilot.packages import NODE_EXTRAS, write_node_packages
from optuna_seer.planning.placement import ClusterShape, TrialSlot
from optuna_seer.worker.checkpoint_keys import ENV_CHECKPOINT_KEY
from optuna_seer.worker.context import ENV_RESUME_FROM, ENV_STORAGE, ENV_TRAIN_SCRIPT
from optuna_seer.worker.epoch_checkpoints import (
    ENV_CHECKPOINT_EVERY_EPOCHS,
    ENV_CHECKPOINT_EVERY_MINUTES,
    CheckpointSchedule,
)
from optuna_seer.worker.remote_checkpoints import (
    shared_store_protocol,
    store_distribution,
    store_extra,
)

# The SkyPilot YAMLs and the example tune script: launchers/ at the top of a checkout, which
# the package ships as optuna_seer/launchers (a link in the checkout: one copy of each file).
LAUNCHERS_DIR = Path(str(importlib.resources.files("optuna_seer").joinpath("launchers")))
TEMPLATES_DIR = LAUNCHERS_DIR
DEFAULT_TEMPLATE = LAUNCHERS_DIR / "trial.yaml"
# Where a cluster's nodes find the driver's optuna-seer wheel and pinned Optuna
# (the template's setup reads ``SEER_PACKAGES``).
NODE_PACKAGES = "~/.seer-node"
ENV_PACKAGES = "SEER_PACKAGES"
# Node variables that hold credentials: passed as SkyPilot ``secrets``, not ``envs``. The
# study URL (an RDB password), the checkpoint key, and any variable whose name or value says
# it is one (a launch's extra env: AWS_SECRET_ACCESS_KEY, HF_TOKEN, DB_PASS, a
# DATABASE_URL with a password, a ghp_… token under any name; see optuna_seer._secrets).
SECRET_ENVS = (ENV_STORAGE, ENV_CHECKPOINT_KEY)


class TaskBuilder:
    """Builds the ``sky.Task`` objects (and their YAML) of one backend's clusters and trials.

    Args mirror :class:`~optuna_seer.backends.skypilot.SkyPilotBackend`'s, plus
    ``storage_for_nodes``: the study URL nodes open for the executor's URL (it may start a
    storage proxy). Every argument is checked here, and what SkyPilot will be given is
    validated with SkyPilot itself.
    """

    def __init__(
        self,
        *,
        resources: str | Mapping[str, Any],
        clouds: Sequence[str],
        use_spot: bool,
        on_demand_fallback: bool,
        candidate_order: Literal["cost", "listed"],
        script: str | None,
        checkpoints: str | None,
        workdir: str | os.PathLike[str] | None,
        template: str | os.PathLike[str] | None,
        storage_for_nodes: Callable[[str], str],
    ) -> None:
        import sky
        import yaml

        if script is not None and (not isinstance(script, str) or not script):
            raise ValueError(
                f"script={script!r} must name the training script to run, or be left out "
                "(the executor's train= is run)."
            )
        self.store_pins = self._checkpoint_store_pins(checkpoints)
        if isinstance(clouds, str):
            raise TypeError(f"clouds={clouds!r} must be a list of infra strings, e.g. ['aws'].")
        if candidate_order not in ("cost", "listed"):
            raise ValueError(f"candidate_order={candidate_order!r} must be 'cost' or 'listed'.")
        base = {"accelerators": resources} if isinstance(resources, str) else dict(resources)
        for key in ("infra", "cloud", "use_spot", "any_of", "ordered"):
            if key in base:
                raise ValueError(
                    f"resources has {key!r}: pass clouds=[...] and use_spot=... instead, "
                    "the backend builds SkyPilot's candidates from them."
                )
        self._sky = sky
        self.accelerator, self.gpus_per_node = parse_accelerators(base.get("accelerators"))
        self._base_resources = base
        self.clouds = tuple(clouds)
        self.use_spot = use_spot
        self.on_demand_fallback = on_demand_fallback
        self.candidate_order = candidate_order
        self.script = script
        self.checkpoints = checkpoints.rstrip("/") if checkpoints else None
        self.workdir = str(Path(workdir) if workdir is not None else Path.cwd())
        self._storage_for_nodes = storage_for_nodes
        # Validate what SkyPilot will be given, now, with SkyPilot itself.
        self.node_resources(ClusterShape(1, self.gpus_per_node))
        template_path = Path(template) if template is not None else DEFAULT_TEMPLATE
        if not template_path.is_file():
            raise ValueError(
                f"trial template {template_path} not found: pass template= the path of a "
                f"SkyPilot task YAML (e.g. a copy of {DEFAULT_TEMPLATE})."
            )
        self._template = load_template(template_path, yaml)
        self.cluster_task(ClusterShape(1, self.gpus_per_node))  # SkyPilot checks the template

    @staticmethod
    def _checkpoint_store_pins(checkpoints: str | None) -> tuple[str, ...]:
        """What the nodes install, beyond :data:`NODE_EXTRAS`, to open ``checkpoints``: the
        driver's version of its fsspec library (none for ``s3://`` and ``gs://``).

        Raises:
            ValueError: ``checkpoints`` is not the URL of a store every node can reach, or
                its protocol's library is unknown or not installed here.
        """
        if checkpoints is None:
            return ()
        protocol = shared_store_protocol(checkpoints) if isinstance(checkpoints, str) else None
        if protocol is None or not checkpoints.partition("://")[2].strip("/"):
            raise ValueError(
                f"checkpoints={checkpoints!r} must be the URL of a store every node can reach: "
                "s3://bucket/prefix, gs://bucket/prefix or another fsspec protocol "
                "(az://, …), not a local path, file:// or memory://."
            )
        if store_extra(protocol) in NODE_EXTRAS:
            return ()
        return (store_distribution(protocol),)

    def _node_protocols(self) -> set[str]:
        """The checkpoint store protocols the nodes get a client for."""
        protocols = {p for p in ("s3", "s3a", "gs", "gcs") if store_extra(p) in NODE_EXTRAS}
        if self.checkpoints is not None:
            protocols.add(str(shared_store_protocol(self.checkpoints)))
        return protocols

    # ----------------------------------------------------------------- resources
    def candidates(self) -> list[dict[str, Any]]:
        """Resource candidates (cloud × spot tier) as SkyPilot YAML fields."""
        tiers = [True, False] if self.use_spot and self.on_demand_fallback else [self.use_spot]
        clouds: list[str | None] = list(self.clouds) or [None]
        found: list[dict[str, Any]] = []
        for spot in tiers:
            for cloud in clouds:
                candidate: dict[str, Any] = {"use_spot": spot}
                if cloud is not None:
                    candidate["infra"] = cloud
                found.append(candidate)
        return found

    def node_resources_config(self, shape: ClusterShape) -> dict[str, Any]:
        """The ``resources:`` YAML of a cluster of ``shape`` (with its candidates)."""
        config = dict(self._base_resources)
        config["accelerators"] = f"{self.accelerator}:{shape.gpus_per_node}"
        candidates = self.candidates()
        if len(candidates) == 1:
            config.update(candidates[0])
        else:
            config["any_of" if self.candidate_order == "cost" else "ordered"] = candidates
        return config

    def node_resources(self, shape: ClusterShape) -> Any:
        """Real ``sky.Resources`` candidates: a set (one, or ``any_of``) or a list (``ordered``)."""
        return self._sky.Resources.from_yaml_config(self.node_resources_config(shape))

    # --------------------------------------------------------------------- tasks
    def boot_task(self, shape: ClusterShape) -> Any:
        """The task of a cluster's first ``sky launch``: its nodes only (no workdir, file
        mounts, setup or run), so SkyPilot's provisioning is timed apart from the setup."""
        config: dict[str, Any] = {
            "name": "seer-boot",
            "num_nodes": shape.nodes,
            "resources": self.node_resources_config(shape),
        }
        return self._sky.Task.from_yaml_config(config)

    def cluster_task(self, shape: ClusterShape) -> Any:
        """The task ``sky launch`` gets to provision and set up a cluster (no ``run``)."""
        config = copy.deepcopy(self._template)
        config.pop("run", None)
        config["name"] = "seer-provision"
        config["num_nodes"] = shape.nodes
        config["resources"] = self.node_resources_config(shape)
        config["workdir"] = self.workdir
        mounts = config.get("file_mounts") or {}
        packages = node_packages_dir(self.store_pins)
        config["file_mounts"] = {**mounts, NODE_PACKAGES: str(packages)}
        config["envs"] = {**(config.get("envs") or {}), ENV_PACKAGES: NODE_PACKAGES}
        return self._sky.Task.from_yaml_config(config)

    def trial_task(self, spec: LaunchSpec, slot: TrialSlot) -> Any:
        """The task ``sky exec`` runs for one trial on its slot."""
        config = copy.deepcopy(self._template)
        config["name"] = f"seer-trial-{spec.trial_number}-rung-{spec.rung}"
        config["num_nodes"] = slot.nodes
        config["resources"] = {"accelerators": f"{self.accelerator}:{slot.gpus_per_node}"}
        config["workdir"] = self.workdir
        env = {**(config.get("envs") or {}), **self.node_env(spec)}
        # The study URL may hold an RDB password: it goes to the nodes as a SkyPilot secret
        # (set in their environment like an env var, but redacted in every YAML SkyPilot
        # keeps or shows: its cluster table, the dashboard, `sky status`), never in envs.
        secret_envs = {
            name: env.pop(name) for name in list(env) if is_secret_env(name, str(env[name]))
        }
        config["envs"] = env
        config["secrets"] = {**_inline_secrets(config.get("secrets")), **secret_envs}
        return self._sky.Task.from_yaml_config(config)

    # ------------------------------------------------------------ node contract
    def node_env(self, spec: LaunchSpec) -> dict[str, str]:
        """The variables a trial's nodes get: the ``SEER_*`` contract plus the script."""
        env = launch_env(self.remote_spec(spec))
        env.setdefault(ENV_RESUME_FROM, "")
        env[ENV_TRAIN_SCRIPT] = self.train_script(spec)
        env.update({str(k): str(v) for k, v in spec.env.items()})
        return env

    def train_script(self, spec: LaunchSpec) -> str:
        """``SEER_TRAIN_SCRIPT`` for ``spec``: its entrypoint as the nodes see it, or ``script``.

        Raises:
            ValueError: Both or neither of ``spec.entrypoint`` and ``script`` are given, or the
                entrypoint lies outside ``workdir``.
        """
        if spec.entrypoint and self.script is not None:
            raise ValueError(
                f"trial {spec.trial_number} names its program (entrypoint={spec.entrypoint!r}, "
                f"the executor's train=) and SkyPilotBackend has script={self.script!r}: leave "
                "script out, the nodes run the executor's train=."
            )
        if spec.entrypoint:
            return node_train_script(spec.entrypoint, self.workdir)
        if self.script is None:
            raise ValueError(
                f"trial {spec.trial_number} names no program (LaunchSpec.entrypoint is empty) "
                "and SkyPilotBackend has no script=: give one of them."
            )
        return self.script

    def remote_spec(self, spec: LaunchSpec) -> LaunchSpec:
        """``spec`` as the nodes see it: storage they can open, checkpoints in a store they
        reach (``s3://``, ``gs://`` or the protocol of ``checkpoints``).

        Raises:
            ValueError: A checkpoint is on the driver's disk (or in memory) and no
                ``checkpoints`` prefix is set, it is in a store the nodes get no client for,
                or the storage cannot be reached from the nodes.
        """
        checkpoint_uri, resume_from = spec.checkpoint_uri, spec.resume_from
        protocol = shared_store_protocol(checkpoint_uri)
        if protocol is None:
            if self.checkpoints is None:
                raise ValueError(
                    f"checkpoint_uri={checkpoint_uri!r} is on the driver's disk, which cloud "
                    "nodes cannot read: pass checkpoints='s3://bucket/prefix' (or gs://…) to "
                    "SkyPilotBackend."
                )
            checkpoint_uri = f"{self.checkpoints}/{spec.study_name}/trial-{spec.trial_number}"
            if resume_from is not None and shared_store_protocol(resume_from) is None:
                resume_from = f"{checkpoint_uri}/{Path(resume_from).name}"
        elif protocol not in self._node_protocols():
            raise ValueError(
                f"checkpoint_uri={checkpoint_uri!r} is in a {protocol}:// store the nodes get "
                f"no client for (they take {sorted(self._node_protocols())}): pass "
                f"checkpoints='{protocol}://bucket/prefix' to SkyPilotBackend, which installs "
                "the driver's client on every node."
            )
        return replace(
            spec,
            storage=self._storage_for_nodes(spec.storage),
            checkpoint_uri=checkpoint_uri,
            resume_from=resume_from,
        )


def node_packages_dir(store_pins: Sequence[str] = ()) -> Path:
    """A directory (made once per process and ``store_pins``) holding a wheel of the
    optuna-seer this process runs and a ``requirements.txt`` that installs it and pins this
    process's Optuna (and ``store_pins``: a checkpoint store's client beyond S3 and GCS):
    what every cluster's nodes install (see :mod:`optuna_seer.backends.skypilot.packages`)."""
    return _node_packages_dir(tuple(store_pins))


@functools.lru_cache(maxsize=8)
def _node_packages_dir(store_pins: tuple[str, ...]) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="seer-node-packages-"))
    # Launches upload it as they start; nothing reads it after this process ends.
    atexit.register(shutil.rmtree, directory, True)
    return write_node_packages(directory, pins=("optuna", *store_pins)).directory


def node_train_script(entrypoint: str, workdir: str | os.PathLike[str]) -> str:
    """The ``SEER_TRAIN_SCRIPT`` that runs an executor entrypoint on a node.

    Nodes get ``workdir`` (synced to their working directory), so a ``.py`` target on the
    driver's disk becomes its path relative to ``workdir``; ``module:function`` targets are
    imported as they are. Either runs through ``python -m optuna_seer.worker.entrypoint`` under
    ``torchrun`` (see :mod:`optuna_seer.worker.node_entrypoint`).

    Raises:
        ValueError: The file is outside ``workdir``, so the nodes would not have it.

    Example:
        >>> node_train_script("/home/me/proj/train.py:fit", "/home/me/proj")
        '-m optuna_seer.worker.entrypoint train.py:fit'
        >>> node_train_script("mypkg.train:fit", "/home/me/proj")
        '-m optuna_seer.worker.entrypoint mypkg.train:fit'
    """
    location, colon, function = entrypoint.rpartition(":")
    if not colon or not location.endswith(".py"):
        location, function = entrypoint, ""
    target = entrypoint
    if location.endswith(".py") and Path(location).is_absolute():
        root = Path(workdir).resolve()
        try:
            relative = Path(location).resolve().relative_to(root)
        except ValueError:
            raise ValueError(
                f"train target {entrypoint!r} is outside workdir={str(workdir)!r}, which is all "
                "the nodes get: move it under workdir, or pass workdir= a directory holding it."
            ) from None
        target = relative.as_posix() + (f":{function}" if function else "")
    return f"-m optuna_seer.worker.entrypoint {shlex.quote(target)}"


def is_secret_env(name: str, value: str = "") -> bool:
    """Whether a node variable goes to SkyPilot as a secret (redacted) rather than an env:
    one of :data:`SECRET_ENVS`, or a credential by its name or value
    (:func:`optuna_seer._secrets.is_secret`).

    Example:
        >>> is_secret_env("SEER_STORAGE"), is_secret_env("AWS_SECRET_ACCESS_KEY")
        (True, True)
        >>> is_secret_env("DATABASE_URL", "postgresql://app:pw@db/app"), is_secret_env("DB_PASS")
        (True, True)
        >>> is_secret_env("SEER_TRIAL", "3")
        False
    """
    return name in SECRET_ENVS or is_secret(name, value)


def load_template(path: Path, yaml: Any) -> dict[str, Any]:
    """The trial template at ``path`` as a mapping, checked where the builder edits it.

    Raises:
        ValueError: It is not readable YAML, not a mapping, has no ``run:`` command, or its
            ``envs:``/``secrets:`` is not a mapping; the message names the file.
    """
    try:
        template = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"trial template {path} is not readable YAML: {exc}") from None
    if not isinstance(template, dict):
        raise ValueError(
            f"trial template {path} holds {type(template).__name__} {template!r:.60}, not a "
            "SkyPilot task mapping (name:, resources:, envs:, setup:, run:)."
        )
    if not isinstance(template.get("run"), str) or not template["run"].strip():
        raise ValueError(
            f"trial template {path} has no run: command (got {template.get('run')!r}); give "
            "the command every node runs, e.g. run: python -m optuna_seer.worker.node_entrypoint."
        )
    for section in ("envs", "secrets"):
        value = template.get(section)
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"trial template {path} has {section}: {value!r:.60}; give a mapping "
                "NAME: value (or leave it out)."
            )
    envs = {str(k): str(v) for k, v in (template.get("envs") or {}).items() if v is not None}
    try:  # the epoch checkpoint schedule its envs ask for: refused here, not on every node
        CheckpointSchedule.from_env(envs)
    except ValueError as exc:
        asked = {
            n: envs.get(n) for n in (ENV_CHECKPOINT_EVERY_EPOCHS, ENV_CHECKPOINT_EVERY_MINUTES)
        }
        raise ValueError(
            f"trial template {path} has envs {asked}: {exc} Give a whole number of epochs "
            "and/or a number of minutes > 0 (or leave them out: every epoch)."
        ) from None
    return template


def parse_accelerators(value: object) -> tuple[str, int]:
    """``"A100:8"`` → ``("A100", 8)``; a bare name means one GPU.

    Example:
        >>> parse_accelerators("A100:8"), parse_accelerators("T4")
        (('A100', 8), ('T4', 1))
    """
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"resources needs accelerators like 'A100:8' (name:GPUs per node), got {value!r}."
        )
    name, _, count = value.partition(":")
    try:
        gpus = int(count) if count else 1
    except ValueError:
        raise ValueError(f"accelerators={value!r}: the count after ':' must be an int.") from None
    if not name or gpus < 1:
        raise ValueError(f"accelerators={value!r} must be NAME:COUNT with COUNT >= 1.")
    return name, gpus


def _inline_secrets(value: object) -> dict[str, str | None]:
    """The ``secrets:`` mapping of a template (absent: none; a null value is a SkyPilot
    managed-secret reference, kept as it is)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"the trial template's secrets: is {value!r}; give a mapping NAME: value (SkyPilot "
            "inline secrets), e.g. secrets: {SEER_STORAGE: grpc://127.0.0.1:13000}."
        )
    return {str(k): None if v is None else str(v) for k, v in value.items()}
