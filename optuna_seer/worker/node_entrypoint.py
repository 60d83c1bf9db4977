"""What every node of a trial runs: fetch the resume checkpoint, ``torchrun`` the script, upload.

``optuna_seer/templates/trial.yaml`` runs ``python -m optuna_seer.worker.node_entrypoint`` on each
node of a SkyPilot cluster. From SkyPilot's variables (``SKYPILOT_NODE_RANK``,
``SKYPILOT_NODE_IPS``, ``SKYPILOT_NUM_NODES``, ``SKYPILOT_NUM_GPUS_PER_NODE``) and the
``SEER_*`` launch contract it:

1. downloads ``SEER_RESUME_FROM`` (``s3://…``, ``gs://…``, any fsspec URL) to a local file,
   verifying its seal with the study's key ``SEER_CHECKPOINT_KEY`` (a corrupt or foreign one
   falls back to the trial's newest earlier good checkpoint), and points ``SEER_RESUME_FROM``
   at that file (sealed again, which each worker's
   :func:`~optuna_seer.worker.context.trial_context` verifies);
2. points ``SEER_CHECKPOINT_URI`` at an empty local directory and runs
   ``torchrun --nnodes=N --node_rank=R --nproc_per_node=G --master_addr=<first IP>`` on
   ``SEER_TRAIN_SCRIPT`` (``torchrun --standalone`` on a single node, so trials packed on one
   node never share a port), which trains to ``SEER_TARGET_EPOCHS``, reports to the study and
   saves its checkpoint into that directory;
3. on node rank 0 only, uploads every checkpoint the script wrote to the trial's
   ``SEER_CHECKPOINT_URI`` store, sealed with the study's key (one whose seal the script
   wrote is verified first), and exits with torchrun's exit code.

Checkpoints inside the rung (``rung-<r>-epoch-<e>.ckpt``,
:mod:`optuna_seer.worker.epoch_checkpoints`) go up while torchrun runs (node rank 0 looks
every ``SEER_UPLOAD_EVERY_S`` seconds, default 5) and once more when it ends, also when it
failed; a SIGTERM to this process (a preemption notice) is passed to torchrun, whose workers
store their newest epoch, which is uploaded before this process exits. A launch of a rung
resumes from the newest epoch checkpoint of that rung in the store, when there is one.

Extra variables: ``SEER_TRAIN_SCRIPT`` (required: a script path, or any torchrun target split
like a shell would, e.g. ``-m package.module arg``), ``SEER_MASTER_PORT`` (default 29500),
``SEER_PROCS_PER_NODE`` (default: GPUs per node, at least 1), ``SEER_LOCAL_DIR`` (where the
launch keeps its local copies, removed once it ends without an error; default a
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
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from types import FrameType

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
    TrialContext,
    checkpoint_object_uri,
    trial_context,
)
from optuna_seer.worker.epoch_checkpoints import epoch_checkpoints_of, newest_epoch_checkpoint

_logger = get_logger(__name__)

ENV_MASTER_PORT = "SEER_MASTER_PORT"
ENV_PROCS_PER_NODE = "SEER_PROCS_PER_NODE"
ENV_LOCAL_DIR = "SEER_LOCAL_DIR"
ENV_UPLOAD_EVERY_S = "SEER_UPLOAD_EVERY_S"
_RUNG_END = re.compile(r"rung-(\d+)\.ckpt")

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
    wanted = _RUNG_END.fullmatch(name)
    earlier = sorted(
        (int(m.group(1)), n)
        for n in store.names()
        if (m := _RUNG_END.fullmatch(n)) and wanted and int(m.group(1)) < int(wanted.group(1))
    )
    candidates = [name, *(n for _, n in reversed(earlier))]
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


class EpochUploader:
    """Copy the rung's newest epoch checkpoint from this node's ``local_dir`` to ``store``.

    :meth:`sync` uploads it when it is new (verified against the seal the worker wrote) and
    deletes the rung's older ones from the store; :meth:`start` runs it every ``every_s``
    seconds in a thread until :meth:`stop`.
    """

    def __init__(
        self, local_dir: Path, store: CheckpointStore, rung: int, every_s: float = 5.0
    ) -> None:
        self.local = LocalStore(local_dir, key=store.key)
        self.store = store
        self.rung = rung
        self.every_s = every_s
        self.uploaded: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sync(self) -> str | None:
        """Upload the newest local epoch checkpoint if not done yet; its URI, or ``None``."""
        with self._lock:
            newest = newest_epoch_checkpoint(self.local.names(), self.rung)
            if newest is None or newest[0] == self.uploaded:
                return None
            name = newest[0]
            try:
                self.local.fetch(name, self.local.root / name)  # the worker's seal holds
            except (CorruptCheckpointError, FileNotFoundError) as exc:
                _logger.warning("epoch checkpoint %s not uploaded: %s", name, exc)
                return None
            uri = self.store.put(self.local.root / name, name)
            for older in epoch_checkpoints_of(self.store.names(), self.rung):
                if older != name:
                    self.store.delete(older)
            self.uploaded = name
            _logger.info("uploaded %s", uri)
            return uri

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sync()
            except Exception as exc:  # the next look, or the final sync, tries again
                _logger.warning("epoch checkpoint upload failed: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="seer-epoch-upload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def resume_point(remote: CheckpointStore, rung: int, resume_uri: str | None) -> str | None:
    """What this rung's launch resumes from: the rung's newest epoch checkpoint in the store
    (one that does not verify is skipped later by the fallback), else ``resume_uri``."""
    try:
        newest = newest_epoch_checkpoint(remote.names(), rung)
    except OSError as exc:
        _logger.warning("cannot list %s: %s", remote.uri, exc)
        newest = None
    if newest is None:
        return resume_uri
    return checkpoint_object_uri(remote.uri, newest[0])


def _fetch_resume(
    remote: CheckpointStore,
    rung: int,
    resume_uri: str | None,
    local_dir: Path,
    key: CheckpointKey | None,
) -> Path | None:
    """A verified local copy of :func:`resume_point` (an epoch checkpoint that fails falls back
    to ``resume_uri`` and its earlier rung ends); ``None``: start fresh."""
    point = resume_point(remote, rung, resume_uri)
    if point is not None and point != resume_uri:
        name = point.rpartition("/")[2]
        local_dir.mkdir(parents=True, exist_ok=True)
        try:
            return remote.fetch(name, local_dir / name)
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            _logger.warning("epoch checkpoint %s unusable (%s); using %s", point, exc, resume_uri)
    if resume_uri is None:
        return None
    return fetch_resume_checkpoint(resume_uri, local_dir, key)


def run_node(environ: Mapping[str, str] | None = None, extra_args: Sequence[str] = ()) -> int:
    """Run this node's part of one trial launch; torchrun's exit code."""
    env = dict(os.environ if environ is None else environ)
    context = trial_context(env, fetch=False)  # this node fetches once, for all its workers
    command = torchrun_command(env, extra_args)
    rank = _int_var(env, SKYPILOT_NODE_RANK, 0)
    given = env.get(ENV_LOCAL_DIR)
    base = Path(given or tempfile.mkdtemp(prefix="seer-node-"))
    work = base / f"trial-{context.trial_number}-rung-{context.rung}-node-{rank}"
    try:
        code = _launch(env, context, command, rank, work)
    except BaseException:
        _logger.error("the launch failed; its local files stay in %s", work)
        raise
    # What the store needs is in it (or, after a failed torchrun, its newest epoch is): the
    # node's copies would fill a reused node's disk, one trial and rung at a time.
    shutil.rmtree(work if given else base, ignore_errors=True)
    return code


def _launch(
    env: dict[str, str], context: TrialContext, command: list[str], rank: int, work: Path
) -> int:
    """:func:`run_node`'s launch in ``work``: fetch, torchrun, upload; torchrun's exit code."""
    out_dir = work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    key = key_from_env(env)
    remote = open_store(context.checkpoint_uri, key=key)
    fetched = _fetch_resume(remote, context.rung, context.resume_uri, work / "download", key)
    if fetched is not None:
        # A verified local copy, sealed again: every worker's trial_context checks it before
        # training resumes from it.
        env[ENV_RESUME_FROM] = LocalStore(work / "resume", key=key).put(fetched, fetched.name)
        fetched.unlink()
    else:
        env.pop(ENV_RESUME_FROM, None)
    env[ENV_CHECKPOINT_URI] = str(out_dir)
    uploader = EpochUploader(out_dir, remote, context.rung, float(env.get(ENV_UPLOAD_EVERY_S, 5)))
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        process.send_signal(signum)  # the workers store their newest epoch, then exit

    previous = signal.signal(signal.SIGTERM, forward)
    if rank == 0:
        uploader.start()
    try:
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        uploader.stop()
    if rank == 0:
        uploader.sync()  # the newest epoch, also after a failure or a SIGTERM
    if code != 0:
        _logger.error("torchrun exited with %d; no rung-end checkpoint uploaded", code)
        return code
    if rank == 0:
        uploaded = upload_checkpoints(out_dir, remote)
        if not uploaded:
            _logger.warning("%s wrote no checkpoint", env[ENV_TRAIN_SCRIPT])
        for uri in uploaded:
            _logger.info("uploaded %s", uri)
        for name in epoch_checkpoints_of(remote.names(), context.rung):
            if any(uri.endswith(f"/rung-{context.rung}.ckpt") for uri in uploaded):
                remote.delete(name)  # the rung-end checkpoint replaces them
    return 0


def main() -> None:
    """``python -m optuna_seer.worker.node_entrypoint [script args…]``."""
    sys.exit(run_node(extra_args=sys.argv[1:]))


if __name__ == "__main__":
    main()
