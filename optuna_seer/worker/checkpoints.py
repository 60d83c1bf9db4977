"""Checkpoint stores: a local directory or an S3 prefix, every object sealed by a digest beside it.

A store keeps named checkpoint files for one trial (``rung-0.ckpt``, ``rung-1.ckpt`` …),
each with a ``<name>.sha256`` sidecar. With a checkpoint key (``key=``, default
``SEER_CHECKPOINT_KEY``: see :mod:`optuna_seer.worker.checkpoint_keys`) the sidecar holds an
**HMAC-SHA-256** of the name and bytes, so whoever can write the store cannot swap a
checkpoint (with its sidecar) for one the study's workers did not write; without a key, a
plain SHA-256 (corruption is caught, tampering is not; a warning says so once). A store that
has a key refuses a plain digest, and a keyless reader verifies a keyed one with the driver's
keyring.

Writes are atomic (local: write then rename; S3: the digest is written after the object, so
a reader never trusts an object whose digest is missing or different). :meth:`fetch`
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
from collections.abc import Callable, Iterator
import hashlib
import hmac
import os
from pathlib import Path
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from optuna_seer._logging import get_logger
from optuna_seer.storage.retry import RetryPolicy, call_with_retries
from optuna_seer.worker.checkpoint_keys import (
    ENV_CHECKPOINT_KEY,
    CheckpointKey,
    find_key,
    key_from_env,
    parse_seal,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

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


class S3Store(CheckpointStore):
    """Checkpoints under ``s3://bucket/prefix`` through boto3.

    ``endpoint_url`` (or the ``AWS_ENDPOINT_URL`` variable boto3 reads) points at another
    S3-compatible server, e.g. a local moto server in tests. Every request is retried with
    backoff and jitter while the server is unreachable, times out or answers 5xx/throttling
    (``retry``, see :mod:`optuna_seer.storage.retry`); then
    :class:`~optuna_seer.storage.retry.StorageUnavailableError` says which object and why. An
    unreachable server is never taken for a corrupt checkpoint. ``key`` default:
    ``SEER_CHECKPOINT_KEY``.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        retry: RetryPolicy | None = None,
        key: CheckpointKey | None = None,
    ) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"checkpoint URI {uri!r} is not of the form s3://bucket/prefix")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self._client: S3Client = client
        self._retry = retry or RetryPolicy()
        self.key = key if key is not None else key_from_env()

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return call_with_retries(
            call, what=f"{what} ({self.uri})", transient=is_transient_s3_error, policy=self._retry
        )

    def put(self, local_path: str | Path, name: str) -> str:
        _check_name(name)
        digest = seal_file(local_path, name, self.key)
        # The digest goes last: a put cut short leaves a checkpoint that fails verification.
        self._call(
            f"upload {name}",
            lambda: self._client.upload_file(str(local_path), self.bucket, self._key(name)),
        )
        self._call(
            f"upload {name}{DIGEST_SUFFIX}",
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=self._key(name + DIGEST_SUFFIX), Body=digest.encode()
            ),
        )
        return f"s3://{self.bucket}/{self._key(name)}"

    def fetch(self, name: str, local_path: str | Path) -> Path:
        from botocore.exceptions import ClientError

        _check_name(name)

        def read_digest() -> str:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(name + DIGEST_SUFFIX)
            )
            return response["Body"].read().decode().strip()

        try:
            expected = self._call(f"read {name}{DIGEST_SUFFIX}", read_digest)
        except ClientError as exc:
            raise CorruptCheckpointError(
                f"checkpoint {self.uri}/{name} has no readable digest: {exc}"
            ) from None
        target = Path(local_path)
        self._call(
            f"download {name}",
            lambda: self._client.download_file(self.bucket, self._key(name), str(target)),
        )
        verify_file(target, name, expected, self.key, f"{self.uri}/{name}")
        return target

    def names(self) -> list[str]:
        start = f"{self.prefix}/" if self.prefix else ""

        def listing() -> list[str]:
            found: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"][len(start) :]
                    if name and "/" not in name and not name.endswith(DIGEST_SUFFIX):
                        found.append(name)
            return sorted(found)

        return self._call("list checkpoints", listing)

    def delete(self, name: str) -> None:
        for key in (self._key(_check_name(name)), self._key(name + DIGEST_SUFFIX)):
            self._call(
                f"delete {key}",
                lambda key=key: self._client.delete_object(Bucket=self.bucket, Key=key),  # type: ignore[misc]
            )


_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)


def is_transient_s3_error(error: BaseException) -> bool:
    """Whether an S3 error may pass if retried: no connection, a timeout, 5xx, throttling."""
    from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code")) in _TRANSIENT_S3_CODES
    if isinstance(error, (S3UploadFailedError, S3TransferFailedError)):
        cause = error.__cause__ or error.__context__
        return (cause is not None and is_transient_s3_error(cause)) or "Could not connect" in str(
            error
        )
    return False


def open_store(
    uri: str, *, endpoint_url: str | None = None, key: CheckpointKey | None = None
) -> CheckpointStore:
    """A :class:`S3Store` for ``s3://…`` URIs, else a :class:`LocalStore` directory; both seal
    with ``key`` (default: ``SEER_CHECKPOINT_KEY``, else a plain SHA-256)."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"checkpoint URI {uri!r} must be a directory path or s3://bucket/prefix")
    if uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url, key=key)
    if "://" in uri:
        raise ValueError(
            f"checkpoint URI {uri!r}: only local directories and s3://bucket/prefix are supported"
        )
    return LocalStore(uri, key=key)
