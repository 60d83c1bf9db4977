"""Checkpoint stores: a local directory, or any fsspec URL (``s3://``, ``gs://`` …), every
object sealed by a digest beside it.

A store keeps named checkpoint files for one trial (``rung-0.ckpt``, ``rung-1.ckpt`` …),
each with a ``<name>.sha256`` sidecar. With a checkpoint key (``key=``, default
``SEER_CHECKPOINT_KEY``: see :mod:`optuna_seer.worker.checkpoint_keys`) the sidecar holds an
**HMAC-SHA-256** of the name and bytes, so whoever can write the store cannot swap a
checkpoint (with its sidecar) for one the study's workers did not write; without a key, a
plain SHA-256 (corruption is caught, tampering is not; a warning says so once). A store that
has a key refuses a plain digest, and a keyless reader verifies a keyed one with the driver's
keyring.

Remote stores go through `fsspec <https://filesystem-spec.readthedocs.io>`_: ``s3://`` through
``s3fs`` (``pip install '.[s3]'`` in an optuna-seer clone), ``gs://`` through ``gcsfs``
(``'.[gcs]'``), and any other protocol fsspec knows, all alike
(:class:`RemoteStore`). Options for the filesystem (an endpoint, a token, a project) come
from ``storage_options=`` or, for workers, the JSON in ``SEER_CHECKPOINT_STORAGE_OPTIONS``;
S3 honours ``AWS_ENDPOINT_URL`` too. Transient failures are retried by the client library
itself (S3: botocore's ``Config(retries={"mode": "standard", "total_max_attempts": N})``,
nothing stacked on top; GCS: gcsfs's own retries), then :class:`StorageUnavailableError` says
which object, how often and why: an unreachable server is never taken for a corrupt
checkpoint.

Writes are atomic (local: write then rename; remote: the digest is written after the object,
so a reader never trusts an object whose digest is missing or different). :meth:`fetch`
verifies the digest and raises :class:`CorruptCheckpointError` on a mismatch, so a caller can
fall back to an earlier good checkpoint.

Example:
    >>> import tempfile
    >>> store = open_store(tempfile.mkdtemp())
    >>> src = tempfile.NamedTemporaryFile(delete=False); _ = src.write(b"w"); src.close()
    >>> store.put(src.name, "rung-0.ckpt").endswith("rung-0.ckpt")
    True
    >>> store.names()
    ['rung-0.ckpt']
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
import hashlib
import hmac
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

from optuna_seer._logging import get_logger
from optuna_seer.worker.checkpoint_keys import (
    ENV_CHECKPOINT_KEY,
    CheckpointKey,
    find_key,
    key_from_env,
    parse_seal,
)

_logger = get_logger(__name__)

DIGEST_SUFFIX = ".sha256"
_warned_unkeyed = False


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's bytes do not match its recorded digest (or the digest is missing), or
    it is sealed with another key (or none) than the reader's."""


def _blocks(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


def file_digest(path: str | Path) -> str:
    """The plain SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


def _warn_unkeyed() -> None:
    global _warned_unkeyed
    if not _warned_unkeyed:
        _warned_unkeyed = True
        _logger.warning(
            "no checkpoint key (%s): checkpoints are sealed with a plain SHA-256, which "
            "catches corruption but not a checkpoint swapped together with its digest",
            ENV_CHECKPOINT_KEY,
        )


def seal_file(path: str | Path, name: str, key: CheckpointKey | None) -> str:
    """The sidecar text for file ``path`` stored as ``name``: its HMAC under ``key``, or
    (no key; a warning, once) its plain SHA-256."""
    if key is None:
        _warn_unkeyed()
        return file_digest(path)
    return key.seal(name, _blocks(path))


def verify_file(
    path: str | Path, name: str, recorded: str, key: CheckpointKey | None, where: str
) -> None:
    """Check file ``path`` (stored as ``name`` at ``where``) against its sidecar ``recorded``.

    With ``key`` only a seal by that key passes; without one, a seal by a key in the driver's
    keyring, or a plain SHA-256 (a warning, once).

    Raises:
        CorruptCheckpointError: It does not match, or is sealed by another key or by none.
    """
    recorded = recorded.strip()
    sealed = parse_seal(recorded)
    if sealed is None:
        if key is not None:
            raise CorruptCheckpointError(
                f"checkpoint {where} has a plain SHA-256, not the HMAC of this study's "
                f"checkpoint key ({key.fingerprint}): it was not written by the study's workers "
                "(or was written before checkpoints were keyed)"
            )
        _warn_unkeyed()
        if file_digest(path) != recorded:
            raise CorruptCheckpointError(f"checkpoint {where} does not match its SHA-256")
        return
    fingerprint, _ = sealed
    use = key if key is not None and key.fingerprint == fingerprint else None
    if use is None and key is None:
        use = find_key(fingerprint)
    if use is None:
        which = "this process does not have"
        if key is not None:
            which = f"is not this launch's ({key.fingerprint})"
        raise CorruptCheckpointError(
            f"checkpoint {where} is sealed with checkpoint key {fingerprint[:16]}, which "
            f"{which}: set {ENV_CHECKPOINT_KEY} to the study's key"
        )
    if not hmac.compare_digest(use.seal(name, _blocks(path)), recorded):
        raise CorruptCheckpointError(f"checkpoint {where} does not match its HMAC-SHA-256")


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or name.endswith(DIGEST_SUFFIX):
        raise ValueError(
            f"checkpoint name {name!r} must be a plain file name (no '/', not hidden, "
            f"not ending in {DIGEST_SUFFIX!r})."
        )
    return name


class CheckpointStore(abc.ABC):
    """Named, sealed checkpoint files under one URI (``key``: what seals them, or ``None``)."""

    uri: str
    key: CheckpointKey | None

    @abc.abstractmethod
    def put(self, local_path: str | Path, name: str) -> str:
        """Store ``local_path`` as ``name``; returns the stored object's URI."""

    @abc.abstractmethod
    def fetch(self, name: str, local_path: str | Path) -> Path:
        """Copy ``name`` to ``local_path`` after verifying its digest."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Stored checkpoint names, sorted."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove ``name`` and its digest (idempotent)."""


class LocalStore(CheckpointStore):
    """Checkpoints in a directory (created on demand); ``key`` default: ``SEER_CHECKPOINT_KEY``."""

    def __init__(self, directory: str | Path, *, key: CheckpointKey | None = None) -> None:
        self.root = Path(directory)
        self.uri = str(self.root)
        self.key = key if key is not None else key_from_env()

    def put(self, local_path: str | Path, name: str) -> str:
        _check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        os.close(handle)
        shutil.copyfile(local_path, temporary)
        digest = seal_file(temporary, name, self.key)
        os.replace(temporary, target)
        digest_tmp = self.root / f".{name}{DIGEST_SUFFIX}.tmp"
        digest_tmp.write_text(digest)
        os.replace(digest_tmp, self.root / f"{name}{DIGEST_SUFFIX}")
        return str(target)

    def fetch(self, name: str, local_path: str | Path) -> Path:
        source = self.root / _check_name(name)
        digest_file = self.root / f"{name}{DIGEST_SUFFIX}"
        if not source.exists():
            raise FileNotFoundError(f"no checkpoint {name!r} in {self.uri}")
        if not digest_file.exists():
            raise CorruptCheckpointError(f"checkpoint {source} has no {DIGEST_SUFFIX} digest")
        target = Path(local_path)
        if target.resolve() != source.resolve():
            shutil.copyfile(source, target)
        verify_file(target, name, digest_file.read_text(), self.key, str(source))
        return target

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(DIGEST_SUFFIX)
        )

    def delete(self, name: str) -> None:
        for path in (self.root / _check_name(name), self.root / f"{name}{DIGEST_SUFFIX}"):
            path.unlink(missing_ok=True)


def __getattr__(name: str) -> Any:
    # The fsspec stores live in remote_checkpoints (imported on first use: a local store
    # needs no fsspec); their names stay importable from here.
    if name in _REMOTE_NAMES:
        from optuna_seer.worker import remote_checkpoints

        return getattr(remote_checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_REMOTE_NAMES = frozenset(
    {"RemoteStore", "S3Store", "is_transient_store_error", "is_transient_s3_error"}
)


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    key: CheckpointKey | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> CheckpointStore:
    """The store at ``uri``: a :class:`LocalStore` for a directory (or ``file://``), an
    :class:`S3Store` for ``s3://…``, a :class:`RemoteStore` for any other fsspec URL
    (``gs://…``); all seal with ``key`` (default: ``SEER_CHECKPOINT_KEY``, else a plain
    SHA-256).

    Example:
        >>> open_store("memory://seer/trial-0").names()
        []
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError(
            f"checkpoint URI {uri!r} must be a directory path or a URL such as s3://bucket/prefix "
            "or gs://bucket/prefix"
        )
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :], key=key)
    from optuna_seer.worker.remote_checkpoints import RemoteStore, S3Store

    if uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url, key=key, storage_options=storage_options)
    if "://" in uri:
        return RemoteStore(uri, key=key, storage_options=storage_options)
    return LocalStore(uri, key=key)
