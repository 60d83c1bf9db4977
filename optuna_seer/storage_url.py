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

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_PREFIX = "journal:"
GRPC_PREFIX = "grpc://"


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring for the forms)."""
    if not isinstance(url, str) or not url:
        raise ValueError(
            f"storage URL {url!r} must be an RDB URL (sqlite:///path.db), journal:<path> or "
            "grpc://host:port."
        )
    if url.startswith(JOURNAL_PREFIX):
        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
    if url.startswith(GRPC_PREFIX):
        parsed = urlparse(url)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"storage URL {url!r} must be grpc://host:port.")
        return optuna.storages.GrpcStorageProxy(host=parsed.hostname, port=parsed.port)
    return optuna.storages.get_storage(url)


def storage_url_of(storage: BaseStorage) -> str:
    """The URL another process can open to share ``storage``.

    Raises:
        ValueError: The storage lives in this process only (in-memory), or its kind has no
            URL form here; the message says which storages work.
    """
    backend = storage
    if type(storage).__name__ == "_CachedStorage":  # Optuna wraps RDBs in a cache layer.
        backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage):
        return str(backend.url)
    if isinstance(backend, JournalStorage):
        journal = getattr(backend, "_backend", None)
        if isinstance(journal, JournalFileBackend):
            return JOURNAL_PREFIX + str(journal._file_path)
    if isinstance(backend, optuna.storages.GrpcStorageProxy):
        host = getattr(backend, "_host", None)
        port = getattr(backend, "_port", None)
        if host is not None and port is not None:
            return f"{GRPC_PREFIX}{host}:{port}"
    raise ValueError(
        f"the study's storage ({type(backend).__name__}) cannot be shared with worker "
        "processes: create the study with an RDB URL such as 'sqlite:///seer.db', a "
        "JournalStorage(JournalFileBackend(path)), or pass storage_url=... explicitly."
    )
