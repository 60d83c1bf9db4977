"""The study URL cloud nodes open, serving the driver's own storage when they cannot open it.

Nodes reach the study through an RDB, ``grpc://`` or ``grpcs://`` URL as it is. A storage
only the driver can open (a local SQLite file) is served through Optuna's gRPC proxy
(:class:`optuna_seer.storage.proxy.StorageProxy`, started on first need) behind the
authenticated TLS tunnel of :mod:`optuna_seer.storage.tunnel`, with a credential made for this
backend (one job) only, on an address the nodes can reach: ``proxy_host``, or
``$SEER_ADVERTISE_HOST`` (set by the driver template). The URL nodes get,
``grpcs://seer:<token>@host:port?pin=<sha256>``, holds the credential: it reaches them as the
``SEER_STORAGE`` SkyPilot secret (:mod:`optuna_seer.backends.skypilot.tasks`), never as an env,
and is written elsewhere only redacted.
"""

from __future__ import annotations

import os

from optuna_seer.storage.proxy import ProxyCredential, StorageProxy

ENV_ADVERTISE_HOST = "SEER_ADVERTISE_HOST"
# Storage URLs a cloud node can open; anything else lives on the driver's disk.
REMOTE_STORAGE_SCHEMES = ("grpc://", "grpcs://", "postgresql", "mysql", "oracle", "mssql")


class NodeStorage:
    """Maps the executor's storage URL to the one nodes use; owns the proxy it may start.

    Args:
        storage: The URL nodes use whatever the executor's is (``None``: decide per URL).
        proxy_host: Address the nodes dial for the proxy (default ``$SEER_ADVERTISE_HOST``).
        proxy_port: Port the proxy's TLS tunnel listens on, on every interface of the driver.

    Example:
        >>> NodeStorage(None, None, 13000).url_for("postgresql://db.example.com/optuna")
        'postgresql://db.example.com/optuna'
    """

    def __init__(self, storage: str | None, proxy_host: str | None, proxy_port: int) -> None:
        if isinstance(proxy_port, bool) or not isinstance(proxy_port, int):
            raise TypeError(f"proxy_port={proxy_port!r} must be an int.")
        if not 1 <= proxy_port <= 65535:
            raise ValueError(f"proxy_port={proxy_port} must be in 1..65535.")
        self.storage = storage
        self.proxy_host = proxy_host
        self.proxy_port = proxy_port
        self._proxy: StorageProxy | None = None
        self._served: dict[str, str] = {}

    def url_for(self, storage: str) -> str:
        """The URL nodes open for the executor's ``storage`` (starts the proxy if needed).

        Raises:
            ValueError: ``storage`` is on the driver's disk and no address for a proxy is known.
        """
        if self.storage is not None:
            return self.storage
        if storage.startswith(REMOTE_STORAGE_SCHEMES):
            return storage
        if storage in self._served:
            return self._served[storage]
        host = self.proxy_host or os.environ.get(ENV_ADVERTISE_HOST)
        if not host:
            raise ValueError(
                "the study storage is on the driver's disk and cloud nodes cannot open it: pass "
                "storage='postgresql://…' (an RDB every node reaches), storage='grpcs://…' (a "
                f"proxy you run with --url-file), or proxy_host= / ${ENV_ADVERTISE_HOST} (the "
                "driver's address the nodes can reach) so this backend serves it through "
                "Optuna's gRPC proxy behind an authenticated TLS tunnel."
            )
        self._proxy = StorageProxy(
            storage,
            host="0.0.0.0",
            port=self.proxy_port,
            advertise_host=host,
            credential=ProxyCredential.generate(),
        ).start()
        self._served[storage] = self._proxy.url
        return self._proxy.url

    def close(self) -> None:
        """Stop the proxy, if one was started (idempotent); the study stays in its storage."""
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        self._served.clear()
