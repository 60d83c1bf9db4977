"""What every node of a trial runs: fetch the resume checkpoint, ``torchrun`` the script, upload.

``optuna_seer/templates/trial.yaml`` runs ``python -m optuna_seer.worker.node_entrypoint`` on each
node of a SkyPilot cluster. From SkyPilot's variables (``SKYPILOT_NODE_RANK``,
``SKYPILOT_NODE_IPS``, ``SKYPILOT_NUM_NODES``, ``SKYPILOT_NUM_GPUS_PER_NODE``) and the
``SEER_*`` launch contract it:

1. downloads ``SEER_RESUME_FROM`` (an ``s3://…`` checkpoint) to a local file, verifying its
   seal with the study's key ``SEER_CHECKPOINT_KEY`` (a corrupt or foreign one falls back to
   the trial's newest earlier good checkpoint), and points ``SEER_RESUME_FROM`` at that file
   (sealed again, which each worker's :func:`~optuna_seer.worker.context.trial_context`
   verifies);
2. points ``SEER_CHECKPOINT_URI`` at an empty local directory and runs
   ``torchrun --nnodes=N --node_rank=R --nproc_per_node=G --master_addr=<first IP>`` on
   ``SEER_TRAIN_SCRIPT`` (``torchrun --standalone`` on a single node, so trials packed on one
   node never share a port), which trains to ``SEER_TARGET_EPOCHS``, reports to the study and
   saves its checkpoint into that directory;
3. on node rank 0 only, uploads every checkpoint the script wrote to the trial's
   ``SEER_CHECKPOINT_URI`` store, sealed with the study's key (one whose seal the script
   wrote is verified first), and exits with torchrun's exit code.

Extra variables: ``SEER_TRAIN_SCRIPT`` (required: a script path, or any torchrun target split
like a shell would, e.g. ``-m package.module arg``), ``SEER_MASTER_PORT`` (default 29500),
``SEER_PROCS_PER_NODE`` (default: GPUs per node, at least 1), ``SEER_LOCAL_DIR`` (default a
new temporary directory).

Example:
    >>> env = {"SKYPILOT_NUM_NODES": "2", "SKYPILOT_NODE_RANK": "1",
    ...        "SKYPILOT_NODE_IPS": "10.0.0.1\\n10.0.0.2", "SKYPILOT_NUM_GPUS_PER_NODE": "8",
    ...        "SEER_TRAIN_SCRIPT": "train.py"}
    >>> torchrun_command(env)[3:]
    ['--nnodes=2', '--node_rank=1', '--nproc_per_node=8', '--master_addr=10.0.0.1', \
'--master_port=29500', 'train.py']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import tempfile

from optuna_seer._logging import get_logger
from optuna_seer.worker.checkpoint_keys import CheckpointKey, key_from_env
from optuna_seer.worker.checkpoints import (
    DIGEST_SUFFIX,
    CheckpointStore,
    CorruptCheckpointError,
    LocalStore,
    open_store,
)
from optuna_seer.worker.context import (
    ENV_CHECKPOINT_URI,
    ENV_RESUME_FROM,
    ENV_TRAIN_SCRIPT,
    trial_context,
)

_logger = get_logger(__name__)

ENV_MASTER_PORT = "SEER_MASTER_PORT"
ENV_PROCS_PER_NODE = "SEER_PROCS_PER_NODE"
ENV_LOCAL_DIR = "SEER_LOCAL_DIR"

SKYPILOT_NUM_NODES = "SKYPILOT_NUM_NODES"
SKYPILOT_NODE_RANK = "SKYPILOT_NODE_RANK"
SKYPILOT_NODE_IPS = "SKYPILOT_NODE_IPS"
SKYPILOT_NUM_GPUS_PER_NODE = "SKYPILOT_NUM_GPUS_PER_NODE"

DEFAULT_MASTER_PORT = 29500


def _int_var(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise RuntimeError(f"{name} is not set: run this on a SkyPilot node or set it.")
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"{name}={raw!r} is not a whole number.") from None


def torchrun_command(env: Mapping[str, str], extra_args: Sequence[str] = ()) -> list[str]:
    """The ``torchrun`` command line for this node, from the SkyPilot and SEER variables."""
    nodes = _int_var(env, SKYPILOT_NUM_NODES, 1)
    rank = _int_var(env, SKYPILOT_NODE_RANK, 0)
    ips = [ip.strip() for ip in env.get(SKYPILOT_NODE_IPS, "127.0.0.1").splitlines() if ip.strip()]
    if len(ips) != nodes:
        raise RuntimeError(
            f"{SKYPILOT_NODE_IPS} lists {len(ips)} addresses but {SKYPILOT_NUM_NODES}={nodes}."
        )
    if not 0 <= rank < nodes:
        raise RuntimeError(f"{SKYPILOT_NODE_RANK}={rank} must be in [0, {nodes}).")
    gpus = _int_var(env, SKYPILOT_NUM_GPUS_PER_NODE, 0)
    procs = _int_var(env, ENV_PROCS_PER_NODE, max(gpus, 1))
    script = shlex.split(env.get(ENV_TRAIN_SCRIPT, ""))
    if not script:
        raise RuntimeError(f"{ENV_TRAIN_SCRIPT} is not set: the training script to run.")
    command = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        # Trials packed on one node must not share a master port: let torchrun pick one.
        return [
            *command,
            "--standalone",
            "--nnodes=1",
            f"--nproc_per_node={procs}",
            *script,
            *extra_args,
        ]
    port = _int_var(env, ENV_MASTER_PORT, DEFAULT_MASTER_PORT)
    return [
        *command,
        f"--nnodes={nodes}",
        f"--node_rank={rank}",
        f"--nproc_per_node={procs}",
        f"--master_addr={ips[0]}",
        f"--master_port={port}",
        *script,
        *extra_args,
    ]


def fetch_resume_checkpoint(
    resume_from: str, local_dir: Path, key: CheckpointKey | None = None
) -> Path:
    """Download ``resume_from`` (``<store URI>/<name>``) into ``local_dir``, verified with
    ``key`` (default ``SEER_CHECKPOINT_KEY``).

    A corrupt checkpoint falls back to the newest earlier good one in the same store.

    Raises:
        CorruptCheckpointError: Neither it nor any earlier checkpoint verifies.
    """
    store_uri, _, name = resume_from.rstrip("/").rpartition("/")
    if not store_uri or not name:
        raise ValueError(f"{ENV_RESUME_FROM}={resume_from!r} is not <checkpoint store>/<name>.")
    store = open_store(store_uri, key=key)
    local_dir.mkdir(parents=True, exist_ok=True)
    candidates = [name, *sorted((n for n in store.names() if n < name), reverse=True)]
    errors: list[str] = []
    for candidate in candidates:
        try:
            fetched = store.fetch(candidate, local_dir / candidate)
        except CorruptCheckpointError as exc:
            errors.append(str(exc))
            continue
        if candidate != name:
            _logger.warning("%s is corrupt; resuming from the earlier %s", name, candidate)
        return fetched
    raise CorruptCheckpointError("; ".join(errors))


def upload_checkpoints(local_dir: Path, store: CheckpointStore) -> list[str]:
    """Upload every checkpoint in ``local_dir`` to ``store`` (sealed with its key); the
    stored URIs.

    ``local_dir`` is this node's own: a script may write its checkpoint there as a plain file
    (it is sealed on upload), but one whose digest it wrote does not verify is left out, with
    an error logged.
    """
    local = LocalStore(local_dir, key=store.key)
    uploaded: list[str] = []
    for name in local.names():
        if (local_dir / f"{name}{DIGEST_SUFFIX}").exists():
            try:
                local.fetch(name, local_dir / name)
            except CorruptCheckpointError as exc:
                _logger.error("not uploaded: %s", exc)
                continue
        uploaded.append(store.put(local_dir / name, name))
    return uploaded


def run_node(environ: Mapping[str, str] | None = None, extra_args: Sequence[str] = ()) -> int:
    """Run this node's part of one trial launch; torchrun's exit code."""
    env = dict(os.environ if environ is None else environ)
    context = trial_context(env, fetch=False)  # this node fetches once, for all its workers
    command = torchrun_command(env, extra_args)
    rank = _int_var(env, SKYPILOT_NODE_RANK, 0)
    base = Path(env.get(ENV_LOCAL_DIR) or tempfile.mkdtemp(prefix="seer-node-"))
    work = base / f"trial-{context.trial_number}-rung-{context.rung}-node-{rank}"
    out_dir = work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    key = key_from_env(env)
    remote = open_store(context.checkpoint_uri, key=key)
    if context.resume_uri:
        # A verified local copy, sealed again: every worker's trial_context checks it before
        # training resumes from it.
        fetched = fetch_resume_checkpoint(context.resume_uri, work / "download", key)
        env[ENV_RESUME_FROM] = LocalStore(work / "resume", key=key).put(fetched, fetched.name)
        fetched.unlink()
    env[ENV_CHECKPOINT_URI] = str(out_dir)
    code = subprocess.run(command, env=env, check=False).returncode
    if code != 0:
        _logger.error("torchrun exited with %d; nothing uploaded", code)
        return code
    if rank == 0:
        uploaded = upload_checkpoints(out_dir, remote)
        if not uploaded:
            _logger.warning("%s wrote no checkpoint", env[ENV_TRAIN_SCRIPT])
        for uri in uploaded:
            _logger.info("uploaded %s", uri)
    return 0


def main() -> None:
    """``python -m optuna_seer.worker.node_entrypoint [script args…]``."""
    sys.exit(run_node(extra_args=sys.argv[1:]))


if __name__ == "__main__":
    main()
