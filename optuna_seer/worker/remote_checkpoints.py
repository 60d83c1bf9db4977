"""Checkpoint stores under any fsspec URL: ``s3://`` (s3fs), ``gs://`` (gcsfs) and the rest.

The sealing, verification and atomic order of :mod:`optuna_seer.worker.checkpoints` (the
object first, then its digest) hold here too; only the transport differs. Retries are the
client library's own (S3: botocore's ``Config(retries=...)``, standard mode; GCS: gcsfs's),
never a loop of ours on top; what still fails is reported as
:class:`~optuna_seer.storage.retry.StorageUnavailableError`, naming the object.

Example:
    >>> import tempfile
    >>> store = RemoteStore("memory://seer-doc/trial-0")
    >>> src = tempfile.NamedTemporaryFile(delete=False); _ = src.write(b"w"); src.close()
    >>> store.put(src.name, "rung-0.ckpt")
    'memory://seer-doc/trial-0/rung-0.ckpt'
    >>> store.names(), store.fetch("rung-0.ckpt", src.name + ".back").read_bytes()
    (['rung-0.ckpt'], b'w')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import contextlib
import json
import os
from pathlib import Path
import time
from typing import Any, TypeVar
from urllib.parse import urlparse

from optuna_seer._install import install_hint
from optuna_seer._secrets import scrub
from optuna_seer.storage.retry import RetryPolicy, StorageUnavailableError
from optuna_seer.worker.checkpoint_keys import CheckpointKey, key_from_env
from optuna_seer.worker.checkpoints import (
    DIGEST_SUFFIX,
    CheckpointStore,
    CorruptCheckpointError,
    _check_name,
    seal_file,
    verify_file,
)

T = TypeVar("T")


class RemoteStore(CheckpointStore):
    """Checkpoints under any fsspec URL (``s3://bucket/prefix``, ``gs://bucket/prefix`` …).

    Args:
        uri: ``<protocol>://<bucket>/<prefix>``.
        storage_options: For the fsspec filesystem (default: the JSON in
            ``SEER_CHECKPOINT_STORAGE_OPTIONS``, else none).
        retry: S3 only: ``retry.attempts`` calls in all, botocore's standard retry mode
            (exponential backoff with jitter); other protocols retry as their library does.
        key: What seals the checkpoints (default ``SEER_CHECKPOINT_KEY``).

    Raises:
        ValueError: ``uri`` has no protocol or bucket, or fsspec does not know the protocol;
        ImportError: The protocol's library is missing (the message names the extra).
    """

    def __init__(
        self,
        uri: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        key: CheckpointKey | None = None,
    ) -> None:
        parsed = urlparse(uri)
        if not parsed.scheme or not parsed.netloc:
            raise ValueError(
                f"checkpoint URI {uri!r} is not of the form <protocol>://bucket/prefix"
            )
        self.uri = uri.rstrip("/")
        self.protocol = parsed.scheme
        self.root = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        self._retry = retry or RetryPolicy()
        options = dict(storage_options_from_env() if storage_options is None else storage_options)
        self._fs = _filesystem(self.protocol, options, self._retry)
        self.key = key if key is not None else key_from_env()

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _call(self, what: str, call: Callable[[], T]) -> T:
        began = time.monotonic()
        try:
            return call()
        except Exception as exc:
            if not is_transient_store_error(exc):
                raise
            tries = (
                f"{self._retry.attempts} times (botocore's standard retries)"
                if self.protocol == "s3"
                else f"after {type(self._fs).__module__.split('.')[0]}'s own retries"
            )
            raise StorageUnavailableError(
                f"{what} ({self.uri}) failed {tries} over {time.monotonic() - began:.1f} s; "
                f"last error: {type(exc).__name__}: {scrub(str(exc))}"
            ) from exc

    def put(self, local_path: str | Path, name: str) -> str:
        _check_name(name)
        digest = seal_file(local_path, name, self.key)
        # The digest goes last: a put cut short leaves a checkpoint that fails verification.
        self._call(f"upload {name}", lambda: self._fs.put_file(str(local_path), self._path(name)))
        self._call(
            f"upload {name}{DIGEST_SUFFIX}",
            lambda: self._fs.pipe_file(self._path(name + DIGEST_SUFFIX), digest.encode()),
        )
        return f"{self.uri}/{name}"

    def fetch(self, name: str, local_path: str | Path) -> Path:
        _check_name(name)
        try:
            recorded = self._call(
                f"read {name}{DIGEST_SUFFIX}",
                lambda: self._fs.cat_file(self._path(name + DIGEST_SUFFIX)),
            )
        except (FileNotFoundError, PermissionError) as exc:
            if not self._exists(name):
                raise FileNotFoundError(f"no checkpoint {name!r} in {self.uri}") from None
            raise CorruptCheckpointError(
                f"checkpoint {self.uri}/{name} has no readable digest: {exc}"
            ) from None
        target = Path(local_path)
        try:
            self._call(f"download {name}", lambda: self._fs.get_file(self._path(name), str(target)))
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint {name!r} in {self.uri}") from None
        verify_file(target, name, bytes(recorded).decode(), self.key, f"{self.uri}/{name}")
        return target

    def _exists(self, name: str) -> bool:
        return bool(self._call(f"look up {name}", lambda: self._fs.exists(self._path(name))))

    def names(self) -> list[str]:
        def listing() -> list[str]:
            self._fs.invalidate_cache(self.root)
            try:
                entries = self._fs.ls(self.root, detail=False)
            except FileNotFoundError:
                return []
            found = (str(entry).rstrip("/").rpartition("/")[2] for entry in entries)
            return sorted(
                n for n in found if n and not n.startswith(".") and not n.endswith(DIGEST_SUFFIX)
            )

        return self._call("list checkpoints", listing)

    def delete(self, name: str) -> None:
        for path in (self._path(_check_name(name)), self._path(name + DIGEST_SUFFIX)):

            def remove(path: str = path) -> None:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm_file(path)

            self._call(f"delete {path}", remove)


class S3Store(RemoteStore):
    """A :class:`RemoteStore` under ``s3://bucket/prefix`` (through ``s3fs``).

    ``endpoint_url`` (or the ``AWS_ENDPOINT_URL`` variable botocore reads) points at another
    S3-compatible server, e.g. a local moto server in tests. Requests are retried by botocore
    (``retry.attempts`` calls in all, standard mode) while the server is unreachable, times
    out or answers 5xx/throttling; then :class:`StorageUnavailableError` says which object and
    why.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        key: CheckpointKey | None = None,
    ) -> None:
        if urlparse(uri).scheme != "s3" or not urlparse(uri).netloc:
            raise ValueError(f"checkpoint URI {uri!r} is not of the form s3://bucket/prefix")
        options = dict(storage_options_from_env() if storage_options is None else storage_options)
        if endpoint_url is not None:
            options["client_kwargs"] = {
                **options.get("client_kwargs", {}),
                "endpoint_url": endpoint_url,
            }
        super().__init__(uri, storage_options=options, retry=retry, key=key)


ENV_STORAGE_OPTIONS = "SEER_CHECKPOINT_STORAGE_OPTIONS"
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_FILESYSTEM_PACKAGES = {"s3": "s3fs", "gcs": "gcsfs"}
_FILESYSTEMS: dict[tuple[int, str, str, int], Any] = {}
_CLIENT_ENV = ("AWS_", "STORAGE_EMULATOR_HOST", "GOOGLE_", "GCSFS_")


def storage_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fsspec options in ``SEER_CHECKPOINT_STORAGE_OPTIONS`` (a JSON object), or ``{}``.

    Example:
        >>> storage_options_from_env({"SEER_CHECKPOINT_STORAGE_OPTIONS": '{"token": "anon"}'})
        {'token': 'anon'}
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_STORAGE_OPTIONS)
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_STORAGE_OPTIONS} is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{ENV_STORAGE_OPTIONS} must be a JSON object of fsspec options.")
    return options


def _filesystem(protocol: str, options: dict[str, Any], retry: RetryPolicy) -> Any:
    """This process's fsspec filesystem for ``protocol`` with ``options`` (kept per process:
    one client and connection pool per store kind, not per call)."""
    # The client reads its endpoint and credentials from the environment too (AWS_*, the GCS
    # emulator's host): a change there means another client.
    client_env = {k: v for k, v in os.environ.items() if k.startswith(_CLIENT_ENV)}
    described = json.dumps([options, client_env], sort_keys=True, default=str)
    cache_key = (os.getpid(), protocol, described, retry.attempts)
    if cache_key in _FILESYSTEMS:
        return _FILESYSTEMS[cache_key]
    import fsspec  # type: ignore[import-untyped]

    if protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs", {}))
        config.setdefault("retries", {"mode": "standard", "total_max_attempts": retry.attempts})
        options = {**options, "config_kwargs": config}
    try:
        filesystem = fsspec.filesystem(protocol, skip_instance_cache=True, **options)
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise ValueError(
            f"checkpoint store protocol {protocol!r}: {exc}; use a local directory, s3://, gs:// "
            "or another protocol fsspec knows."
        ) from None
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = (
            install_hint(extra, _FILESYSTEM_PACKAGES[extra])
            if extra
            else "install its fsspec library"
        )
        raise ImportError(
            f"checkpoint store {protocol}:// needs {exc.name or exc}: {hint}."
        ) from exc
    if protocol in ("s3", "s3a"):
        filesystem.retries = 1  # s3fs's own loop off: botocore retries, once
    _FILESYSTEMS[cache_key] = filesystem
    return filesystem


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


def is_transient_store_error(error: BaseException) -> bool:
    """Whether a store error may pass if retried: no connection, a timeout, 5xx, throttling
    (the error or what caused it).

    Example:
        >>> is_transient_store_error(ConnectionRefusedError(111, "refused"))
        True
        >>> is_transient_store_error(FileNotFoundError("rung-0.ckpt"))
        False
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        module = type(current).__module__.split(".")[0]
        name = type(current).__name__
        if module == "botocore" and name in (
            "EndpointConnectionError",
            "ConnectionClosedError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "HTTPClientError",
            "ConnectionError",
        ):
            return True
        if module == "aiohttp" and name.startswith(("ClientConnect", "ServerDisconnected")):
            return True
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code"))
            if code in _TRANSIENT_S3_CODES:
                return True
        status = getattr(current, "code", None)  # gcsfs's HttpError
        if module == "gcsfs" and isinstance(status, int) and (status >= 500 or status == 429):
            return True
        current = current.__cause__ or current.__context__
    return False


is_transient_s3_error = is_transient_store_error
"""The former name of :func:`is_transient_store_error`."""


LOCAL_PROTOCOLS = frozenset({"file", "local", "memory"})
"""fsspec protocols whose store only this machine (``memory``: this process) can see."""


def shared_store_protocol(uri: str) -> str | None:
    """The fsspec protocol of ``uri`` when another machine can reach that store (``s3``,
    ``gs``, ``az`` …); ``None`` for a local path, ``file://`` or ``memory://``.

    Example:
        >>> shared_store_protocol("gs://bucket/seer"), shared_store_protocol("/tmp/seer")
        ('gs', None)
    """
    scheme, separator, _ = uri.partition("://")
    if not separator or not scheme or scheme.lower() in LOCAL_PROTOCOLS:
        return None
    return scheme.lower()


def store_extra(protocol: str) -> str | None:
    """The optuna-seer extra that installs the client of ``protocol`` (``s3``, ``gcs``), if
    one does.

    Example:
        >>> store_extra("gs"), store_extra("az")
        ('gcs', None)
    """
    return _EXTRAS.get(protocol)


def store_distribution(protocol: str) -> str:
    """The distribution installed here that implements fsspec's ``protocol`` (``adlfs`` for
    ``az``), so another machine can install the same version.

    Raises:
        ValueError: fsspec does not know ``protocol``, or its library is not installed here;
            the message says what to install.
    """
    import importlib.metadata

    from fsspec.registry import known_implementations  # type: ignore[import-untyped]

    known = known_implementations.get(protocol)
    if known is None:
        raise ValueError(
            f"checkpoint store protocol {protocol!r} is not one fsspec knows; use s3://, gs:// "
            f"or one of {sorted(known_implementations)}."
        )
    module = str(known["class"]).partition(".")[0]
    distributions = importlib.metadata.packages_distributions().get(module)
    if not distributions:
        raise ValueError(
            f"checkpoint store {protocol}:// needs the {module!r} library, which is not "
            f"installed here ({known.get('err', 'fsspec names no hint')}): pip install {module}."
        )
    return distributions[0]
