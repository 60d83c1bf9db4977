"""Checkpoint stores: a local directory or an S3 prefix, every object with a SHA-256 beside it.

A store keeps named checkpoint files for one trial (``rung-0.ckpt``, ``rung-1.ckpt`` …).
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
from collections.abc import Callable
import hashlib
import os
from pathlib import Path
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from optuna_seer.storage.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

DIGEST_SUFFIX = ".sha256"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's bytes do not match its recorded SHA-256 (or the digest is missing)."""


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or name.endswith(DIGEST_SUFFIX):
        raise ValueError(
            f"checkpoint name {name!r} must be a plain file name (no '/', not hidden, "
            f"not ending in {DIGEST_SUFFIX!r})."
        )
    return name


class CheckpointStore(abc.ABC):
    """Named, checksummed checkpoint files under one URI."""

    uri: str

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
    """Checkpoints in a directory (created on demand)."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        self.uri = str(self.root)

    def put(self, local_path: str | Path, name: str) -> str:
        _check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        os.close(handle)
        shutil.copyfile(local_path, temporary)
        digest = file_digest(temporary)
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
        if file_digest(target) != digest_file.read_text().strip():
            raise CorruptCheckpointError(f"checkpoint {source} does not match its SHA-256")
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
    unreachable server is never taken for a corrupt checkpoint.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        retry: RetryPolicy | None = None,
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

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return call_with_retries(
            call, what=f"{what} ({self.uri})", transient=is_transient_s3_error, policy=self._retry
        )

    def put(self, local_path: str | Path, name: str) -> str:
        _check_name(name)
        digest = file_digest(local_path)
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
        if file_digest(target) != expected:
            raise CorruptCheckpointError(f"checkpoint {self.uri}/{name} does not match its SHA-256")
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


def open_store(uri: str, *, endpoint_url: str | None = None) -> CheckpointStore:
    """A :class:`S3Store` for ``s3://…`` URIs, else a :class:`LocalStore` directory."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"checkpoint URI {uri!r} must be a directory path or s3://bucket/prefix")
    if uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url)
    if "://" in uri:
        raise ValueError(
            f"checkpoint URI {uri!r}: only local directories and s3://bucket/prefix are supported"
        )
    return LocalStore(uri)
