"""Shared fixtures: Optuna storages of every kind, real and on disk; a local S3 server; a
SkyPilot home with a small catalog; Python's own Ctrl-C handler. ``--fake-gpus N`` runs the
whole session as if this machine had ``N`` GPUs (see :func:`_fake_gpu_discovery`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
import ipaddress
import linecache
import os
from pathlib import Path
import signal
import socket
from typing import Any

import optuna
import pytest

from tests.fake_sky import sky_home
from tests.local_s3 import S3Server

# The Optuna pair plans for the workers of the machine it runs on unless told otherwise
# (optuna_seer/_machine.py). The tests' plans must not depend on this machine (2 cores here,
# 16 on a GPU one): no cap, as before that default; tests/test_default_pool.py checks the
# default itself. Subprocesses the tests start inherit it.
os.environ.setdefault("OPTUNA_SEER_WORKERS", "none")

# CPython's linecache.checkcache lists the cache's keys, then reads each: another thread that
# drops an entry in between (SQLAlchemy compiling a mapped class while a storage in a
# background thread loads Alembic's migrations) makes it raise KeyError, and doctest calls it
# at the start of every example (seen once in a clean-clone CI run, in a doctest that has no
# thread of its own). Python's own lines, retried: a race in the standard library, not ours.
_checkcache = linecache.checkcache


def _checkcache_retried(filename: str | None = None) -> None:
    for _ in range(10):
        try:
            _checkcache(filename)
            return
        except KeyError:
            continue


linecache.checkcache = _checkcache_retried

optuna.logging.set_verbosity(optuna.logging.WARNING)

_REAL_GETADDRINFO = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", socket.gethostname()}


def _offline_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Tests never touch the network: name lookups other than this machine's fail at once.

    Code that falls back when offline (SkyPilot's catalog fetches, AWS zone lookups) then
    behaves the same on a networked CI machine as here; a test that needs a remote name
    fails with this message instead of reaching the internet.
    """
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in _LOCAL_NAMES:
        return _REAL_GETADDRINFO(host, *args, **kwargs)
    try:
        ipaddress.ip_address(name)  # a literal address needs no lookup
    except ValueError:
        raise socket.gaierror(
            socket.EAI_NONAME, f"tests run offline: no name lookup of {name!r}"
        ) from None
    return _REAL_GETADDRINFO(host, *args, **kwargs)


socket.getaddrinfo = _offline_getaddrinfo


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fake-gpus",
        type=int,
        default=None,
        metavar="N",
        help="run every test as if this machine had N visible GPUs (GPU discovery faked for "
        "the whole session, as tests/test_local_backend.py fakes it per test); e.g. 1 as on "
        "a one-GPU machine, 0 as on a CPU one",
    )


def pytest_configure(config: pytest.Config) -> None:
    gpus = config.getoption("--fake-gpus")
    if gpus is None:
        return
    if gpus < 0:
        raise pytest.UsageError(f"--fake-gpus={gpus}: give a number of GPUs >= 0, e.g. 1.")
    patcher = pytest.MonkeyPatch()
    _fake_gpu_discovery(patcher, gpus)
    config.stash[_FAKE_GPUS] = patcher


def pytest_unconfigure(config: pytest.Config) -> None:
    patcher = config.stash.get(_FAKE_GPUS, None)
    if patcher is not None:
        patcher.undo()


_FAKE_GPUS = pytest.StashKey[pytest.MonkeyPatch]()


def _fake_gpu_discovery(patcher: pytest.MonkeyPatch, gpus: int) -> None:
    """Make :func:`optuna_seer.backends.local.visible_gpus` name GPUs ``0 .. gpus-1`` (and
    :func:`~optuna_seer.backends.local.gpu_name` a fake model) in this process, so
    ``LocalBackend()``, ``machine_slots()`` and the probe see that many. Launches still run on
    what the machine has. An empty ``CUDA_VISIBLE_DEVICES`` still hides them all, as it does
    for torch; a test that fakes ``torch.cuda.device_count`` itself gets the real discovery."""
    import torch

    from optuna_seer.backends import local
    from optuna_seer.profiling import probe

    real_visible: Callable[[], tuple[str, ...]] = local.visible_gpus
    real_count = torch.cuda.device_count

    def visible_gpus() -> tuple[str, ...]:
        if torch.cuda.device_count is not real_count:  # the test fakes torch's own count
            return real_visible()
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            return ()
        return tuple(str(i) for i in range(gpus))

    def gpu_name(index: int = 0) -> str:
        return f"Fake GPU {index}"

    for module in (local, probe):
        patcher.setattr(module, "visible_gpus", visible_gpus)
    patcher.setattr(local, "gpu_name", gpu_name)


STORAGE_KINDS = ["inmemory", "sqlite", "journal"]


def make_storage(kind: str, directory: Path) -> optuna.storages.BaseStorage | str | None:
    """A real storage of ``kind``: ``None`` is Optuna's in-memory storage."""
    if kind == "inmemory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{directory / 'study.db'}"
    if kind == "journal":
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(directory / "journal.log"))
        )
    raise ValueError(kind)


@pytest.fixture(params=STORAGE_KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    yield make_storage(request.param, tmp_path)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own Ctrl-C handler (``KeyboardInterrupt`` in the main thread) for the test.

    In one full CI run, two Ctrl-C tests that pass alone saw the run go on after SIGINT; a
    test that checks what Ctrl-C does must not depend on what earlier tests or imported
    libraries left installed for SIGINT.
    """
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A real moto S3 server on 127.0.0.1 (no AWS: the SDK talks to it over HTTP), empty but
    for its bucket ``seer-test``; ``stop()`` and ``start()`` take it down and back.

    ``AWS_ENDPOINT_URL`` and fake credentials go into the environment, so boto3 in this
    process and in every worker subprocess (which inherit it) use the local server.
    """
    server = S3Server("seer-test")
    server.start()
    try:
        server.reset()  # moto keeps its state per process: start empty
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sky_home_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``HOME`` (where ``sky`` keeps ``~/.sky``) in a fresh directory with a small AWS
    catalog, for the rest of the module: see :func:`tests.fake_sky.sky_home`."""
    with sky_home(tmp_path_factory.mktemp("sky-home")) as path:
        yield path
