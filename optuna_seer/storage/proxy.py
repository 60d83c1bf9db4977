"""Serve a study to remote workers through Optuna's gRPC storage proxy, and open storage URLs.

Cloud nodes cannot open the driver's SQLite file. Two ways to share the study:

* an RDB every node can reach (``postgresql://…``, ``mysql+pymysql://…``): pass its URL;
* the driver serves its own storage with :class:`StorageProxy` (Optuna's
  ``run_grpc_proxy_server`` in a child process) and workers use ``grpc://<driver>:<port>``,
  which :func:`open_storage` turns into an ``optuna.storages.GrpcStorageProxy``.

Needs the ``grpcio`` and ``protobuf`` packages (Optuna's gRPC extra).

Example:
    >>> import tempfile
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/study.db"
    >>> with StorageProxy(url, host="127.0.0.1") as proxy:  # doctest: +SKIP
    ...     study = optuna.create_study(storage=open_storage(proxy.url))
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import os
import signal
import subprocess
import sys
import time
from types import TracebackType
import warnings

import optuna

from optuna_seer._ports import free_port
from optuna_seer.storage.urls import GRPC_PREFIX, redact_url


class StorageProxy:
    """Optuna's gRPC storage proxy over ``storage_url``, in a child process.

    Args:
        storage_url: The storage the proxy serves (SQLite or RDB URL on the driver).
        host: Address to listen on (``0.0.0.0`` on a cloud driver, ``127.0.0.1`` in tests).
        port: Port to listen on (``None``: a free one).
        advertise_host: Host workers dial (default ``host``; the driver's IP on a cloud).
        ready_timeout_s: How long :meth:`start` waits for the server.
    """

    def __init__(
        self,
        storage_url: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        advertise_host: str | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        if storage_url.startswith(GRPC_PREFIX):
            raise ValueError(
                f"storage_url={storage_url!r} is already a gRPC proxy URL: serve the storage "
                "behind it (sqlite:///path.db or an RDB URL such as postgresql://…)."
            )
        self.storage_url = storage_url
        self.host = host
        self.port = free_port(host if host != "0.0.0.0" else "127.0.0.1") if port is None else port
        self.advertise_host = advertise_host or host
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``grpc://advertise_host:port``: what workers put in ``SEER_STORAGE``."""
        return f"{GRPC_PREFIX}{self.advertise_host}:{self.port}"

    def start(self) -> StorageProxy:
        if self._process is not None:
            return self
        command = [sys.executable, "-m", "optuna_seer.storage.proxy", self.storage_url]
        command += ["--host", self.host, "--port", str(self.port)]
        self._process = subprocess.Popen(command, start_new_session=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            client = optuna.storages.GrpcStorageProxy(
                host="127.0.0.1" if self.host == "0.0.0.0" else self.host, port=self.port
            )
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            while True:
                code = self._process.poll()
                if code is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"gRPC storage proxy for {redact_url(self.storage_url)} on "
                        f"{self.host}:{self.port} did not start within {self.ready_timeout_s} s "
                        f"(exit code {code})."
                    )
                try:
                    client.wait_server_ready(timeout=1.0)
                    break
                except ConnectionError:
                    continue
        finally:
            client.close()
        return self

    def stop(self) -> None:
        """Stop the server (idempotent); the underlying storage keeps the study."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> StorageProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m optuna_seer.storage.proxy STORAGE_URL --host 0.0.0.0 --port 13000``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("storage_url")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=13000)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.get_storage(args.storage_url)
    optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
