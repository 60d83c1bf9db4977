"""An authenticated TLS tunnel in front of Optuna's gRPC storage proxy.

Optuna's proxy (``run_grpc_proxy_server`` / ``GrpcStorageProxy``) speaks plain gRPC with no
TLS, no credential and no hook for either: anyone who reaches its port can read, rewrite and
delete every study behind it. So the proxy never faces the network. On the driver it listens
on a Unix socket in a private directory (mode 0700: only the driver's user can connect), and
:func:`serve_tunnel` faces the network instead: it terminates TLS with a per-job self-signed
certificate, authenticates every connection, and only then forwards its bytes to the proxy.
On a worker, :class:`TunnelClient` listens on a Unix socket of its own private directory,
opens an authenticated TLS connection to the driver for each connection gRPC makes to it, and
forwards bytes both ways; the worker's ``GrpcStorageProxy`` dials that socket. Only Optuna's
public API is used, on both sides.

A connection is admitted like this (after the TLS handshake):

1. the client pins the certificate: the SHA-256 of the certificate the server presented must
   be the fingerprint it was given, else it hangs up (no man in the middle);
2. the server sends :data:`MAGIC` and a fresh 32-byte nonce;
3. the client answers ``HMAC-SHA256(token, MAGIC + nonce)``: the token itself never travels;
4. the server compares in constant time; a wrong answer, or none within
   :data:`HANDSHAKE_TIMEOUT_S`, closes the connection before a byte reaches the proxy. A right
   one gets ``OK`` once the proxy behind accepted the forwarded connection (``NU`` if not).

The credential of one job (:class:`ProxyCredential`: a random 256-bit token and the
certificate with its key) is made by :meth:`ProxyCredential.generate` with the
``cryptography`` package; clients need only the token and the fingerprint, which travel in the
``grpcs://`` URL (:mod:`optuna_seer.storage.urls`), given to cloud nodes as a SkyPilot secret.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
import functools
import hashlib
import hmac
import os
from pathlib import Path
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from typing import Any, TypeVar, cast

from optuna_seer._install import install_hint
from optuna_seer._logging import get_logger

_logger = get_logger(__name__)

#: The name in the certificate; clients send it as SNI and pin the certificate, not the name.
SERVER_NAME = "optuna-seer-proxy"
#: What the server sends first after TLS, before the nonce.
MAGIC = b"optuna-seer tunnel 1\n"
NONCE_BYTES = 32
STATUS_OK = b"OK"
STATUS_NO_UPSTREAM = b"NU"
#: How long a connection may take to finish TLS and authenticate.
HANDSHAKE_TIMEOUT_S = 10.0
_CHUNK = 1 << 16


class TunnelRefusedError(ConnectionError):
    """The tunnel at the other end is not the one the credential names, or refused it."""


@dataclass(frozen=True)
class ProxyCredential:
    """One job's credential: the token clients prove and the certificate the server shows.

    Args:
        token: The shared secret (URL-safe text).
        certificate_pem: The server's self-signed certificate (PEM).
        key_pem: Its private key (PEM); only the server needs it.
    """

    token: str = field(repr=False)
    certificate_pem: str = field(repr=False)
    key_pem: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or len(self.token) < 16:
            raise ValueError("the proxy token must be a str of 16 characters or more.")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (hex): what a client pins."""
        return certificate_fingerprint(self.certificate_pem)

    @classmethod
    def generate(cls, *, days: int = 365) -> ProxyCredential:
        """A fresh token and a self-signed EC P-256 certificate valid for ``days``.

        Raises:
            ImportError: The ``cryptography`` package is missing (``pip install '.[grpc]'``
                in an optuna-seer clone).
        """
        try:
            from datetime import datetime, timedelta, timezone

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError as exc:
            raise ImportError(
                "serving the study to other machines needs the 'cryptography' package for its "
                f"per-job TLS certificate: {install_hint('grpc', 'cryptography')}."
            ) from exc
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
        now = datetime.now(timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), False)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            token=secrets.token_urlsafe(32),
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key_pem=key_pem.decode(),
        )


def certificate_fingerprint(certificate_pem: str) -> str:
    """SHA-256 (hex) of a PEM certificate's DER bytes."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(certificate_pem)).hexdigest()


def _answer(token: str, nonce: bytes) -> bytes:
    return hmac.new(token.encode(), MAGIC + nonce, hashlib.sha256).digest()


def private_socket_path(name: str) -> Path:
    """A path for a Unix socket in a fresh directory only this user can enter (mode 0700).

    It ends in ``:0``: Optuna dials (and serves) ``f"{host}:{port}"``, and gRPC takes all of
    ``unix:<path>`` as the path, so :func:`grpc_unix_address` gives ``host=unix:<dir>/<name>``
    and ``port=0`` for it.
    """
    directory = Path(tempfile.mkdtemp(prefix="seer-"))
    if len(str(directory)) > 80:  # AF_UNIX paths are limited to ~107 bytes
        shutil.rmtree(directory, ignore_errors=True)
        directory = Path(tempfile.mkdtemp(prefix="seer-", dir="/tmp"))
    os.chmod(directory, 0o700)
    return directory / f"{name}:0"


def grpc_unix_address(path: Path) -> tuple[str, int]:
    """``(host, port)`` that make Optuna's gRPC server or client use the socket ``path``.

    Example:
        >>> grpc_unix_address(Path("/tmp/seer-x/proxy.sock:0"))
        ('unix:/tmp/seer-x/proxy.sock', 0)
    """
    text = str(path)
    if not text.endswith(":0"):
        raise ValueError(f"socket path {text!r} must end in ':0' (see private_socket_path).")
    return f"unix:{text[:-2]}", 0


def remove_socket_dir(path: Path) -> None:
    """Remove the private directory :func:`private_socket_path` made for ``path``."""
    shutil.rmtree(path.parent, ignore_errors=True)


# ------------------------------------------------------------------------ both sides
_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[None]])


def _until_shutdown(handler: _Handler) -> _Handler:
    """A connection handler that ends quietly when its loop shuts down (cancelled)."""

    @functools.wraps(handler)
    async def run(*args: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await handler(*args)

    return cast(_Handler, run)


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until either side ends, then close both."""

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            await _close(sink)

    await asyncio.gather(pump(a_reader, b_writer), pump(b_reader, a_writer))


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive on the connection, so an idle tunnel survives NATs and firewalls."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


# ----------------------------------------------------------------------------- server side
def server_ssl_context(credential: ProxyCredential) -> ssl.SSLContext:
    """TLS 1.2+ with the credential's certificate (the key touches disk only in a 0700 dir,
    for as long as :mod:`ssl` takes to load it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="seer-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_text(credential.certificate_pem)
        key_file.touch(mode=0o600)
        key_file.write_text(credential.key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


async def serve_tunnel(
    host: str,
    port: int,
    credential: ProxyCredential,
    upstream: Path,
    *,
    started: Callable[[], None] | None = None,
) -> None:
    """Accept TLS connections on ``host:port``; forward each authenticated one to the Unix
    socket ``upstream`` (Optuna's proxy). Runs until cancelled."""
    context = server_ssl_context(credential)

    @_until_shutdown
    async def admit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        _keep_alive(writer)
        nonce = secrets.token_bytes(NONCE_BYTES)
        try:
            writer.write(MAGIC + nonce)
            await writer.drain()
            answer = await asyncio.wait_for(reader.readexactly(32), HANDSHAKE_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            _logger.info("storage tunnel: %s left before authenticating", peer)
            await _close(writer)
            return
        if not hmac.compare_digest(answer, _answer(credential.token, nonce)):
            _logger.warning("storage tunnel: refused %s (wrong credential)", peer)
            await _close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(upstream)), HANDSHAKE_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError) as exc:
            _logger.warning("storage tunnel: the proxy behind it is unreachable: %s", exc)
            writer.write(STATUS_NO_UPSTREAM)
            await _close(writer)
            return
        writer.write(STATUS_OK)
        await _splice(reader, writer, up_reader, up_writer)

    server = await asyncio.start_server(
        admit, host, port, ssl=context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
    )
    async with server:
        if started is not None:
            started()
        await server.serve_forever()


# ----------------------------------------------------------------------------- client side
def client_ssl_context() -> ssl.SSLContext:
    """TLS 1.2+ without CA checks: the certificate is pinned by fingerprint instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_tunnel(
    host: str, port: int, token: str, fingerprint: str, *, timeout_s: float = HANDSHAKE_TIMEOUT_S
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An authenticated connection to the tunnel at ``host:port``, ready to carry gRPC.

    Raises:
        TunnelRefusedError: The server's certificate is not the pinned one, it is no tunnel,
            or it refused the token.
        ConnectionError: It or the proxy behind it cannot be reached now (worth retrying).
    """
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=client_ssl_context(), server_hostname=SERVER_NAME
            ),
            timeout_s,
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise ConnectionError(f"storage tunnel {where} unreachable: {exc!r}") from None
    _keep_alive(writer)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        seen = hashlib.sha256(der).hexdigest() if der else "none"
        if not hmac.compare_digest(seen, fingerprint.lower()):
            raise TunnelRefusedError(
                f"storage tunnel {where} shows certificate sha256 {seen}, not the pinned "
                f"{fingerprint}: another server (or a proxy of another job) answers there."
            )
        try:
            hello = await asyncio.wait_for(reader.readexactly(len(MAGIC) + NONCE_BYTES), timeout_s)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            raise ConnectionError(f"storage tunnel {where} sent no challenge") from None
        if not hello.startswith(MAGIC):
            raise TunnelRefusedError(f"{where} is not an optuna-seer storage tunnel.")
        writer.write(_answer(token, hello[len(MAGIC) :]))
        await writer.drain()
        try:
            status = await asyncio.wait_for(reader.readexactly(len(STATUS_OK)), timeout_s)
        except asyncio.TimeoutError:  # before OSError: it is one since Python 3.11
            raise ConnectionError(f"storage tunnel {where} did not answer the token") from None
        except (asyncio.IncompleteReadError, OSError):
            raise TunnelRefusedError(
                f"storage tunnel {where} refused the token (closed the connection): the URL "
                "holds another job's credential."
            ) from None
        if status != STATUS_OK:
            raise ConnectionError(f"storage tunnel {where} is up but its proxy is not (yet).")
        return reader, writer
    except BaseException:
        await _close(writer)
        raise


def probe_tunnel(
    host: str, port: int, token: str, fingerprint: str, *, timeout_s: float = HANDSHAKE_TIMEOUT_S
) -> None:
    """Open and close one authenticated connection, blocking (raises as :func:`open_tunnel`
    does). Runs its own event loop in a short-lived thread, so any caller may use it."""
    failure: list[BaseException] = []

    async def once() -> None:
        _, writer = await open_tunnel(host, port, token, fingerprint, timeout_s=timeout_s)
        await _close(writer)

    def run() -> None:
        try:
            asyncio.run(once())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="seer-tunnel-probe", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class TunnelClient:
    """A Unix socket in this process whose every connection is tunnelled to the driver.

    ``GrpcStorageProxy(host=client.grpc_host, port=0)`` then talks to the driver's proxy over
    the authenticated TLS tunnel. The socket sits in a directory only this user can enter.
    Runs an event loop in a daemon thread; :meth:`close` ends it.
    """

    def __init__(self, host: str, port: int, token: str, fingerprint: str) -> None:
        self.host, self.port = host, port
        self._token, self._fingerprint = token, fingerprint
        self.socket_path = private_socket_path("tunnel.sock")
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="seer-storage-tunnel", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._server is None:
            self.close()
            raise RuntimeError(f"storage tunnel socket {self.socket_path}: {self._failure!r}")

    @property
    def grpc_host(self) -> str:
        """What ``GrpcStorageProxy(host=...)`` takes (with ``port=0``) to dial this socket."""
        return grpc_unix_address(self.socket_path)[0]

    def probe(self, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        """Open and close one authenticated connection (raises as :func:`open_tunnel` does)."""
        probe_tunnel(self.host, self.port, self._token, self._fingerprint, timeout_s=timeout_s)

    def close(self) -> None:
        """Stop forwarding and remove the socket (idempotent)."""
        if self._loop.is_running():

            async def shutdown() -> None:
                if self._server is not None:
                    self._server.close()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                asyncio.get_running_loop().stop()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._thread.join(timeout=10)
        remove_socket_dir(self.socket_path)

    # The loop's thread.
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_unix_server(self._forward, str(self.socket_path))
            )
        except BaseException as exc:  # reported by __init__
            self._failure = exc
        self._ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._loop.close()

    async def _open(self, timeout_s: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await open_tunnel(
            self.host, self.port, self._token, self._fingerprint, timeout_s=timeout_s
        )

    @_until_shutdown
    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await self._open(HANDSHAKE_TIMEOUT_S)
        except ConnectionError as exc:  # gRPC sees a reset and retries with backoff
            _logger.warning("storage tunnel to %s:%d: %s", self.host, self.port, exc)
            await _close(writer)
            return
        await _splice(reader, writer, remote_reader, remote_writer)


_shared: dict[tuple[int, str, int, str, str], TunnelClient] = {}
_shared_lock = threading.Lock()


def shared_tunnel(host: str, port: int, token: str, fingerprint: str) -> TunnelClient:
    """This process's tunnel to ``host:port`` (one per credential and process, made on first
    use and kept until the process ends; a forked child makes its own)."""
    key = (os.getpid(), host, port, token, fingerprint)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = TunnelClient(host, port, token, fingerprint)
            atexit.register(remove_socket_dir, client.socket_path)
        return client
