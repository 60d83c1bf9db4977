"""Serve a study to remote workers through Optuna's gRPC storage proxy, never to anyone else.

Cloud nodes cannot open the driver's SQLite file. Two ways to share the study:

* an RDB every node can reach (``postgresql://…``, ``mysql+pymysql://…``): pass its URL;
* the driver serves its own storage with :class:`StorageProxy` (Optuna's
  ``run_grpc_proxy_server`` in a child process), opened with :func:`open_storage`.

Optuna's proxy has no TLS and no credential, and offers no hook for either: whoever reaches
its port can read, rewrite and delete every study. So :class:`StorageProxy` serves it in one of
two ways, and never as a public unauthenticated port:

* **loopback** (the default: no credential): Optuna's proxy as it is, on ``127.0.0.1``
  (``grpc://127.0.0.1:<port>``), for processes on this machine. Any other host without a
  credential is refused.
* **authenticated TLS** (``credential=ProxyCredential.generate()``, what
  :class:`~optuna_seer.backends.skypilot.SkyPilotBackend` does for cloud nodes): Optuna's proxy
  listens on a Unix socket in a private directory, and the tunnel of
  :mod:`optuna_seer.storage.tunnel` listens on ``host:port``: TLS with the job's self-signed
  certificate, which clients pin, and a per-job token each connection proves (HMAC of a
  nonce) before a byte reaches the proxy. Workers open ``grpcs://seer:<token>@host:port?pin=…``
  (:attr:`StorageProxy.url`), which holds the credential: hand it over as a secret.

Why a tunnel and not gRPC's own TLS: that needs Optuna's private servicer and client insides,
which differ between the Optuna releases this package supports; the tunnel uses only
``run_grpc_proxy_server`` and ``GrpcStorageProxy`` as they are.

The child gets the storage URL (it may hold an RDB password) and the credential on its stdin,
never on its command line or in its environment. Needs ``grpcio`` and ``protobuf`` (Optuna's
gRPC extra), and ``cryptography`` to make a credential.

Example:
    >>> import tempfile
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/study.db"
    >>> with StorageProxy(url, host="0.0.0.0", credential=ProxyCredential.generate(),
    ...                   advertise_host="10.0.0.5") as proxy:  # doctest: +SKIP
    ...     study = optuna.create_study(storage=open_storage(proxy.url))
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
import contextlib
from dataclasses import asdict
import ipaddress
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType
import warnings

import optuna

from optuna_seer._logging import get_logger
from optuna_seer._ports import free_port
from optuna_seer.storage.tunnel import (
    ProxyCredential,
    TunnelRefusedError,
    grpc_unix_address,
    private_socket_path,
    probe_tunnel,
    remove_socket_dir,
    serve_tunnel,
)
from optuna_seer.storage.urls import GRPC_PREFIX, GRPCS_PREFIX, grpcs_url, redact_url

_logger = get_logger(__name__)

#: Where ``python -m optuna_seer.storage.proxy`` reads the storage URL when none is given.
ENV_STORAGE_URL = "SEER_STORAGE_URL"

__all__ = ["ProxyCredential", "StorageProxy", "is_loopback", "main"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StorageProxy:
    """Optuna's gRPC storage proxy over ``storage_url``, in a child process.

    Args:
        storage_url: The storage the proxy serves (SQLite or RDB URL on the driver).
        host: Address to listen on: loopback (the default) or, with a ``credential``, any
            (``0.0.0.0`` on a cloud driver).
        port: Port to listen on (``None``: a free one).
        advertise_host: Host workers dial (default ``host``; the driver's IP on a cloud).
        credential: The job's TLS certificate and token (:meth:`ProxyCredential.generate`);
            ``None`` serves plain gRPC, on loopback only.
        ready_timeout_s: How long :meth:`start` waits for the server.

    Raises:
        ValueError: ``host`` is not loopback and there is no ``credential``, or
            ``storage_url`` is itself a proxy URL.
    """

    def __init__(
        self,
        storage_url: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        advertise_host: str | None = None,
        credential: ProxyCredential | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        if storage_url.startswith((GRPC_PREFIX, GRPCS_PREFIX)):
            raise ValueError(
                f"storage_url={redact_url(storage_url)!r} is already a gRPC proxy URL: serve the "
                "storage behind it (sqlite:///path.db or an RDB URL such as postgresql://…)."
            )
        if credential is None and not is_loopback(host):
            raise ValueError(
                f"host={host!r} without a credential would open the study to anyone who reaches "
                "the port: pass credential=ProxyCredential.generate() (TLS and a per-job token) "
                "or serve on host='127.0.0.1'."
            )
        self.storage_url = storage_url
        self.host = host
        self.port = free_port(host if host != "0.0.0.0" else "127.0.0.1") if port is None else port
        self.advertise_host = advertise_host or host
        self.credential = credential
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What workers put in ``SEER_STORAGE``: ``grpc://advertise_host:port`` on loopback,
        else ``grpcs://seer:<token>@advertise_host:port?pin=<sha256>`` (a secret)."""
        if self.credential is None:
            return f"{GRPC_PREFIX}{self.advertise_host}:{self.port}"
        return grpcs_url(
            self.advertise_host, self.port, self.credential.token, self.credential.fingerprint
        )

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> StorageProxy:
        if self._process is not None:
            return self
        command = [sys.executable, "-m", "optuna_seer.storage.proxy", "--config-stdin"]
        command += ["--host", self.host, "--port", str(self.port)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
        config = {
            "storage_url": self.storage_url,
            "credential": None if self.credential is None else asdict(self.credential),
        }
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(config).encode())
            self._process.stdin.close()
        except OSError:
            pass  # it died already: reported below with its exit code
        deadline = time.monotonic() + self.ready_timeout_s
        local_host = "127.0.0.1" if self.host == "0.0.0.0" else self.host
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
                self._wait_ready(local_host, timeout_s=1.0)
                return self
            except TunnelRefusedError:
                self.stop()
                raise
            except ConnectionError:
                time.sleep(0.2)

    def _wait_ready(self, host: str, *, timeout_s: float) -> None:
        if self.credential is not None:
            token, fingerprint = self.credential.token, self.credential.fingerprint
            probe_tunnel(host, self.port, token, fingerprint, timeout_s=timeout_s)
            return
        try:  # gRPC accepts once its server started (Optuna 4.2 has no wait_server_ready)
            socket.create_connection((host, self.port), timeout=timeout_s).close()
        except OSError as exc:
            raise ConnectionError(f"nothing accepts on {host}:{self.port} yet: {exc}") from None

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


def serve(storage_url: str, host: str, port: int, credential: ProxyCredential | None) -> None:
    """Serve ``storage_url`` until killed: plain on loopback, else behind the TLS tunnel."""
    if credential is None and not is_loopback(host):
        raise ValueError(f"host={host!r} needs a credential (see StorageProxy).")
    storage = optuna.storages.get_storage(storage_url)
    if credential is None:
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
        return
    socket_path = private_socket_path("proxy.sock")
    failure: list[BaseException] = []

    def run_proxy() -> None:
        grpc_host, grpc_port = grpc_unix_address(socket_path)
        try:
            optuna.storages.run_grpc_proxy_server(storage, host=grpc_host, port=grpc_port)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    async def run_tunnel() -> None:
        # SIGTERM (StorageProxy.stop) ends the tunnel cleanly, so the socket's directory goes.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_tunnel(host, port, credential, socket_path)

    try:
        threading.Thread(target=run_proxy, name="seer-grpc-proxy", daemon=True).start()
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if failure or time.monotonic() > deadline:
                raise RuntimeError(f"Optuna's gRPC proxy did not start: {failure[:1]!r}")
            time.sleep(0.05)
        asyncio.run(run_tunnel())
    finally:
        remove_socket_dir(socket_path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m optuna_seer.storage.proxy [STORAGE_URL] --host H --port P``.

    The storage URL comes from ``$SEER_STORAGE_URL`` when not given (keep a password off the
    command line). On a loopback ``--host`` the study is served as plain gRPC
    (``grpc://H:P``); on any other it is served behind the authenticated TLS tunnel with a
    fresh credential, and the URL workers open (``grpcs://…``, a secret) is written to
    ``--url-file`` (mode 0600), with ``--advertise-host`` as its host.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("storage_url", nargs="?")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=13000)
    parser.add_argument("--advertise-host", help="the host workers dial (default: --host)")
    parser.add_argument("--url-file", type=Path, help="where to write the grpcs:// URL")
    parser.add_argument("--config-stdin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    credential: ProxyCredential | None = None
    if args.config_stdin:  # StorageProxy's child: the secrets come on stdin
        config = json.loads(sys.stdin.read())
        storage_url = config["storage_url"]
        if config.get("credential"):
            credential = ProxyCredential(**config["credential"])
    else:
        storage_url = args.storage_url or os.environ.get(ENV_STORAGE_URL)
        if not storage_url:
            parser.error(f"give STORAGE_URL or set ${ENV_STORAGE_URL}")
        if not is_loopback(args.host):
            if args.url_file is None:
                parser.error(
                    f"--host {args.host} serves the study to other machines through the TLS "
                    "tunnel: give --url-file PATH for the grpcs:// URL workers open"
                )
            credential = ProxyCredential.generate()
            url = grpcs_url(
                args.advertise_host or args.host,
                args.port,
                credential.token,
                credential.fingerprint,
            )
            # ~/seer/node-url (docs/cloud.md) on a machine that has no ~/seer yet
            args.url_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            args.url_file.touch(mode=0o600)
            args.url_file.chmod(0o600)
            args.url_file.write_text(url + "\n")
            _logger.warning("the grpcs:// URL for workers (a secret) is in %s", args.url_file)
    serve(storage_url, args.host, args.port, credential)


if __name__ == "__main__":
    main()
