"""How worker processes reach the study's storage: one URL in, one storage out, and back.

Workers run in other processes (or on other machines), so the executor hands them a URL:

* an RDB URL (``sqlite:///runs/seer.db``, ``postgresql://…``, ``mysql://…``);
* ``journal:<path>`` for a :class:`~optuna.storages.JournalStorage` on a
  :class:`~optuna.storages.journal.JournalFileBackend` file (this package's convention);
* ``grpc://host:port`` for Optuna's gRPC storage proxy.

An in-memory storage has no URL: no other process can see it.

Example:
    >>> import optuna, tempfile, os
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db")
    >>> storage_url_of(open_storage(url)) == url
    True
"""

from __future__ import annotations

from urllib.parse import urlparse
import warnings

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from optuna_seer._optuna import grpc_address_of, journal_file_of, unwrap_storage

JOURNAL_PREFIX = "journal:"
GRPC_PREFIX = "grpc://"


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


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring for the forms).

    ``grpc://host:port`` gives a ``GrpcStorageProxy`` and waits up to 30 s for its server.
    """
    if not isinstance(url, str):
        raise TypeError(f"storage URL {url!r} must be a str such as 'sqlite:///path.db'.")
    if not url:
        raise ValueError(
            f"storage URL {url!r} must be a non-empty RDB URL (sqlite:///path.db, "
            "postgresql://…), journal:<path> or grpc://host:port."
        )
    if url.startswith(JOURNAL_PREFIX):
        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
    if url.startswith(GRPC_PREFIX):
        host, port = parse_grpc_url(url)
        with warnings.catch_warnings():  # experimental since Optuna 4.2; we opt in knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
        proxy.wait_server_ready(timeout=30)
        return proxy
    return optuna.storages.get_storage(url)


def storage_url_of(storage: BaseStorage) -> str:
    """The URL another process can open to share ``storage``.

    Raises:
        ValueError: The storage lives in this process only (in-memory), or its kind has no
            URL form here; the message says which storages work.
    """
    backend = unwrap_storage(storage)  # Optuna wraps RDBs in a cache layer.
    if isinstance(backend, RDBStorage):
        return str(backend.url)
    if isinstance(backend, JournalStorage):
        path = journal_file_of(backend)
        if path is not None:
            return JOURNAL_PREFIX + path
    if isinstance(backend, optuna.storages.GrpcStorageProxy):
        address = grpc_address_of(backend)
        if address is not None:
            return f"{GRPC_PREFIX}{address[0]}:{address[1]}"
    raise ValueError(
        f"the study's storage ({type(backend).__name__}) cannot be shared with worker "
        "processes: create the study with an RDB URL such as 'sqlite:///seer.db', a "
        "JournalStorage(JournalFileBackend(path)), or pass storage_url=... explicitly."
    )
