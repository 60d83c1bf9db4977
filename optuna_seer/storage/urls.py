"""How worker processes reach the study's storage: one URL in, one storage out, and back.

Workers run in other processes (or on other machines), so the executor hands them a URL:

* an RDB URL (``sqlite:///runs/seer.db``, ``postgresql://…``, ``mysql://…``);
* a journal file's **path** (``runs/seer.log``; no scheme) for a
  :class:`~optuna.storages.JournalStorage` on a
  :class:`~optuna.storages.journal.JournalFileBackend`, the form the ``optuna`` CLI and
  ``optuna-dashboard`` take (``optuna-dashboard runs/seer.log``); a ``redis://`` URL for a
  ``JournalRedisBackend``, as the ``optuna`` CLI reads it;
* ``grpc://host:port`` for Optuna's gRPC storage proxy as it is (unencrypted, no credential:
  :class:`~optuna_seer.storage.proxy.StorageProxy` serves it on loopback only);
* ``grpcs://seer:<token>@host:port?pin=<sha256>`` for that proxy behind the authenticated TLS
  tunnel of :mod:`optuna_seer.storage.tunnel` (what cloud nodes get): the token is the job's
  credential (in the password's place, so :func:`redact_url` hides it) and ``pin`` the SHA-256
  of the certificate the driver must show.

An in-memory storage has no URL: no other process can see it. The old ``journal:<path>``
form of this package still opens, with a :class:`DeprecationWarning` that names the path
form to use instead.

Example:
    >>> import optuna, tempfile, os
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db")
    >>> storage_url_of(open_storage(url)) == url
    True
    >>> journal = os.path.join(tempfile.mkdtemp(), "seer.log")
    >>> type(open_storage(journal)).__name__, storage_url_of(open_storage(journal)) == journal
    ('JournalStorage', True)
"""

from __future__ import annotations

import os
import re
import time
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlparse
import warnings

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from optuna_seer._optuna import grpc_address_of, journal_file_of, unwrap_storage
from optuna_seer.storage.tunnel import TunnelClient, TunnelRefusedError, shared_tunnel

JOURNAL_PREFIX = "journal:"
"""The deprecated scheme of this package's own for journal files (a plain path replaces it)."""
GRPC_PREFIX = "grpc://"
GRPCS_PREFIX = "grpcs://"
TUNNEL_USER = "seer"
REDIS_PREFIXES = ("redis://", "rediss://", "unix://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_HEADER = b"SQLite format 3\x00"
_FORMS = (
    "RDB URL (sqlite:///path.db, postgresql://…), journal file path (path/to/journal.log), "
    "grpc://host:port or grpcs://seer:<token>@host:port?pin=<sha256>"
)


class GrpcsAddress(NamedTuple):
    """What a ``grpcs://`` URL names: the tunnel's address and the credential to show it."""

    host: str
    port: int
    token: str
    fingerprint: str


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``"grpc://host:port"`` → ``(host, port)``.

    Example:
        >>> parse_grpc_url("grpc://10.0.0.5:13000")
        ('10.0.0.5', 13000)
    """
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "grpc" or not parsed.hostname or port is None:
        raise ValueError(f"storage URL {url!r} is not of the form grpc://host:port")
    return parsed.hostname, port


def grpcs_url(host: str, port: int, token: str, fingerprint: str) -> str:
    """The ``grpcs://`` URL of a tunnelled proxy (the inverse of :func:`parse_grpcs_url`).

    Example:
        >>> grpcs_url("10.0.0.5", 13000, "t0ken-of-the-job", "ab" * 32)[:46]
        'grpcs://seer:t0ken-of-the-job@10.0.0.5:13000?p'
    """
    where = f"[{host}]" if ":" in host else host
    return f"{GRPCS_PREFIX}{TUNNEL_USER}:{quote(token, safe='')}@{where}:{port}?pin={fingerprint}"


def parse_grpcs_url(url: str) -> GrpcsAddress:
    """``"grpcs://seer:TOKEN@host:port?pin=SHA256"`` → :class:`GrpcsAddress`.

    Example:
        >>> parse_grpcs_url("grpcs://seer:t0ken-of-the-job@10.0.0.5:13000?pin=" + "ab" * 32)[:3]
        ('10.0.0.5', 13000, 't0ken-of-the-job')
    """
    form = "grpcs://seer:<token>@host:port?pin=<64 hex digits>"
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    pins = parse_qs(parsed.query).get("pin", [])
    pin = pins[0].lower() if len(pins) == 1 else ""
    if (
        parsed.scheme != "grpcs"
        or not parsed.hostname
        or port is None
        or not parsed.password
        or len(pin) != 64
        or any(c not in "0123456789abcdef" for c in pin)
    ):
        raise ValueError(f"storage URL {redact_url(url)!r} is not of the form {form}")
    return GrpcsAddress(parsed.hostname, port, unquote(parsed.password), pin)


def redact_url(url: str) -> str:
    """``url`` with its password replaced, for logs and reports.

    Example:
        >>> redact_url("postgresql://seer:hunter2@db:5432/optuna")
        'postgresql://seer:***@db:5432/optuna'
    """
    try:
        password = urlparse(url).password
    except ValueError:
        return url
    return url.replace(f":{password}@", ":***@") if password else url


def open_storage(url: str | BaseStorage) -> BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring for the forms).

    A string without a scheme is a journal file's path, as for ``optuna`` and
    ``optuna-dashboard`` (an existing SQLite file, or a path ending in ``.db``/``.sqlite``, is
    refused with the ``sqlite:///`` URL to use). A storage object (e.g.
    ``JournalStorage(JournalFileBackend(path))``) is returned as it is.
    ``grpc://host:port`` gives a ``GrpcStorageProxy`` and waits up to 30 s for its server;
    ``grpcs://…`` gives a :class:`TunneledGrpcStorage`, which waits up to 30 s for the tunnel
    to admit its credential.

    Raises:
        TunnelRefusedError: A ``grpcs://`` server refused the token or showed another
            certificate than the pinned one.
        ConnectionError: The server did not answer within 30 s.
    """
    if isinstance(url, BaseStorage):
        return url
    if not isinstance(url, str):
        raise TypeError(f"storage URL {url!r} must be a str such as 'sqlite:///path.db'.")
    if not url:
        raise ValueError(f"storage URL {url!r} must be a non-empty {_FORMS}.")
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :]
        warnings.warn(
            f"storage URL {url!r}: the 'journal:' scheme is deprecated; pass the journal file's "
            f"path {path!r} (what optuna and optuna-dashboard take) or "
            f"JournalStorage(JournalFileBackend({path!r})).",
            DeprecationWarning,
            stacklevel=2,
        )
        return JournalStorage(JournalFileBackend(path))
    if url.startswith(GRPCS_PREFIX):
        return TunneledGrpcStorage(url)
    if url.startswith(GRPC_PREFIX):
        host, port = parse_grpc_url(url)
        with warnings.catch_warnings():  # experimental since Optuna 4.2; we opt in knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
        wait_server_ready = getattr(proxy, "wait_server_ready", None)  # Optuna 4.3+
        if wait_server_ready is not None:
            wait_server_ready(timeout=30)
        return proxy
    if url.startswith(REDIS_PREFIXES):
        from optuna.storages.journal import JournalRedisBackend

        return JournalStorage(JournalRedisBackend(url))
    if _SCHEME.match(url):
        return optuna.storages.get_storage(url)
    return JournalStorage(JournalFileBackend(journal_path(url)))


def local_file_of(url: str) -> str | None:
    """The local file that ``url`` keeps its study in (a SQLite database or a journal file),
    ``None`` for a server, an in-memory database or a URL that is not one.

    Example:
        >>> local_file_of("sqlite:////tmp/runs/seer.db"), local_file_of("runs/seer.log")
        ('/tmp/runs/seer.db', 'runs/seer.log')
        >>> local_file_of("sqlite:///:memory:"), local_file_of("postgresql://db/optuna")
        (None, None)
    """
    if url.startswith(JOURNAL_PREFIX):
        return url[len(JOURNAL_PREFIX) :] or None
    if url.startswith((GRPC_PREFIX, GRPCS_PREFIX, *REDIS_PREFIXES)):
        return None
    if not _SCHEME.match(url):
        return url or None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None  # open_storage says what is wrong with it
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a SQLite URI (?uri=true)
        database = urlparse(database).path
        return database if database and database != ":memory:" else None
    return database


def open_existing_storage(url: str, option: str = "storage") -> BaseStorage:
    """:func:`open_storage` for a command that only reads a study: a SQLite database or a
    journal file that does not exist is refused instead of created (empty) by opening it.

    Raises:
        FileNotFoundError: ``url`` names a local file that is not there; the message (one
            line) names ``option`` and the path.

    Example:
        >>> open_existing_storage("sqlite:////no/x.db", "--storage")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: --storage sqlite:////no/x.db: no such file '/no/x.db' (a command ...
    """
    path = local_file_of(url) if isinstance(url, str) else None
    if path is not None and not os.path.exists(path):
        raise FileNotFoundError(
            f"{option} {redact_url(url)}: no such file {path!r} (a command that reads a study "
            "creates none); check the path."
        )
    return open_storage(url)


def journal_path(path: str) -> str:
    """``path`` checked as a journal file's path: not a SQLite database in disguise.

    Example:
        >>> journal_path("runs/seer.log")
        'runs/seer.log'
        >>> journal_path("runs/seer.db")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: storage 'runs/seer.db' looks like a SQLite database, ...: use 'sqlite:///...
    """
    sqlite = path.lower().endswith(_SQLITE_SUFFIXES)
    if not sqlite and os.path.isfile(path):
        with open(path, "rb") as handle:
            sqlite = handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    if sqlite:
        raise ValueError(
            f"storage {path!r} looks like a SQLite database, not a journal file: use "
            f"'sqlite:///{path}', or name a journal file such as "
            f"'{os.path.splitext(path)[0]}.log'."
        )
    return path


def storage_url_of(storage: BaseStorage) -> str:
    """The URL another process can open to share ``storage``.

    Raises:
        ValueError: The storage lives in this process only (in-memory), or its kind has no
            URL form here; the message says which storages work.
    """
    backend = unwrap_storage(storage)  # Optuna wraps RDBs in a cache layer.
    if isinstance(backend, TunneledGrpcStorage):
        return backend.url
    if isinstance(backend, RDBStorage):
        return str(backend.url)
    if isinstance(backend, JournalStorage):
        path = journal_file_of(backend)
        if path is not None:
            return path
    if isinstance(backend, optuna.storages.GrpcStorageProxy):
        address = grpc_address_of(backend)
        if address is not None:
            return f"{GRPC_PREFIX}{address[0]}:{address[1]}"
    raise ValueError(
        f"the study's storage ({type(backend).__name__}) cannot be shared with worker "
        "processes: create the study with an RDB URL such as 'sqlite:///seer.db', a "
        "JournalStorage(JournalFileBackend(path)), or pass storage_url=... explicitly."
    )


class TunneledGrpcStorage(optuna.storages.GrpcStorageProxy):
    """Optuna's ``GrpcStorageProxy`` through this process's authenticated TLS tunnel.

    Opened from a ``grpcs://`` URL (see :func:`parse_grpcs_url`); it pickles as that URL, so a
    copy in another process opens its own tunnel.

    Raises:
        TunnelRefusedError: The tunnel refused the token, or showed another certificate.
        ConnectionError: The tunnel did not admit the credential within ``timeout_s``.
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        address = parse_grpcs_url(url)
        self.url = url
        self.tunnel: TunnelClient = shared_tunnel(*address)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.tunnel.probe(timeout_s=min(10.0, timeout_s))
                break
            except TunnelRefusedError:
                raise
            except ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"storage {redact_url(url)} did not admit this credential within "
                        f"{timeout_s} s: {exc}"
                    ) from None
                time.sleep(0.5)
        with warnings.catch_warnings():  # experimental since Optuna 4.2; we opt in knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=self.tunnel.grpc_host, port=0)

    def __reduce__(self) -> tuple[type[TunneledGrpcStorage], tuple[str]]:
        return (TunneledGrpcStorage, (self.url,))
