"""The study served to cloud nodes is open to its job only (issue item 1), on loopback.

Measured on the old code: ``StorageProxy(url, host="0.0.0.0")`` served Optuna's plain gRPC
proxy, and a bare ``optuna.storages.GrpcStorageProxy(host, port)`` without any credential read
every study, rewrote the ledger, injected a COMPLETE trial and deleted the study. Here the
same hostile clients (that bare client, a TLS gRPC client with the pinned certificate but no
token, and the tunnel's own client with a wrong token or a wrong pin) are refused and can
neither read nor write; the client with the job's ``grpcs://`` URL works, in another process
too; the default is a loopback bind; and neither the storage URL nor the credential is on
the proxy child's command line or in its environment.
"""

from __future__ import annotations

from collections.abc import Iterator
import ipaddress
from pathlib import Path
import subprocess
import sys
import warnings

import grpc
import optuna
import pytest

from optuna_seer._ports import free_port
from optuna_seer.backends.skypilot.proxy import NodeStorage
from optuna_seer.storage.proxy import ProxyCredential, StorageProxy, is_loopback, main
from optuna_seer.storage.tunnel import SERVER_NAME, TunnelRefusedError, probe_tunnel
from optuna_seer.storage.urls import grpcs_url, open_storage, parse_grpcs_url, redact_url
from tests.fake_sky import node_env

MARKER = "hunter2-do-not-leak"  # in the served file's path: must not show on a command line

WORKER = """
import os
import optuna
from optuna_seer.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="victim", storage=open_storage(os.environ["SEER_STORAGE"]))
trial = study.ask()
study.tell(trial, trial.suggest_float("x", 0, 1))
print("told", trial.number)
"""


def study_url(tmp_path: Path) -> str:
    directory = tmp_path / MARKER
    directory.mkdir()
    return f"sqlite:///{directory / 'study.db'}"


@pytest.fixture(scope="module")
def credential() -> ProxyCredential:
    return ProxyCredential.generate()


@pytest.fixture
def served(tmp_path: Path, credential: ProxyCredential) -> Iterator[StorageProxy]:
    """A study with two finished trials and a ledger attr, served with ``credential``."""
    url = study_url(tmp_path)
    study = optuna.create_study(study_name="victim", storage=url)
    study.set_user_attr("seer:spent", 0.0056)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with StorageProxy(url, host="127.0.0.1", credential=credential) as proxy:
        yield proxy


def bare_client(port: int) -> optuna.storages.GrpcStorageProxy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)


def assert_bare_client_refused(port: int) -> None:
    """The hostile client of the issue can neither read nor write through ``port``."""
    hostile = bare_client(port)
    try:
        with pytest.raises(grpc.RpcError):
            hostile.get_all_studies()
        with pytest.raises(grpc.RpcError):
            hostile.get_study_id_from_name("victim")
        with pytest.raises(grpc.RpcError):
            hostile.set_study_user_attr(0, "seer:spent", -1666.67)
        with pytest.raises(grpc.RpcError):
            hostile.create_new_study([optuna.study.StudyDirection.MINIMIZE], "injected")
        with pytest.raises(grpc.RpcError):
            hostile.delete_study(0)
    finally:
        getattr(hostile, "close", lambda: None)()  # Optuna 4.3+


def proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6} (32-bit words in host order), v4-mapped ones as v4."""
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8)]
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((str(proc_address(address)), int(port, 16)))
    return found


# --------------------------------------------------------------------------- no processes
def test_the_default_is_loopback_and_a_public_port_needs_a_credential(tmp_path: Path) -> None:
    url = study_url(tmp_path)
    assert StorageProxy(url).host == "127.0.0.1"
    assert StorageProxy(url).url.startswith("grpc://127.0.0.1:")
    for host in ("0.0.0.0", "10.0.0.5", "::"):
        with pytest.raises(ValueError, match="without a credential would open the study"):
            StorageProxy(url, host=host)
    with pytest.raises(SystemExit):  # the command line: a public host needs --url-file
        main([url, "--host", "0.0.0.0"])
    assert is_loopback("::1") and not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_the_nodes_url_holds_the_credential_and_is_redacted(
    tmp_path: Path, credential: ProxyCredential
) -> None:
    proxy = StorageProxy(
        study_url(tmp_path), host="0.0.0.0", advertise_host="10.0.0.5", credential=credential
    )
    assert parse_grpcs_url(proxy.url) == (
        "10.0.0.5",
        proxy.port,
        credential.token,
        credential.fingerprint,
    )
    assert credential.token not in redact_url(proxy.url)
    assert credential.token not in repr(credential) and "PRIVATE" not in repr(credential)
    for bad in ("grpcs://10.0.0.5:1?pin=" + "a" * 64, proxy.url.replace("pin=", "pin=zz")):
        with pytest.raises(ValueError, match="grpcs://seer:<token>@host:port") as refused:
            parse_grpcs_url(bad)
        assert credential.token not in str(refused.value)


# ------------------------------------------------------------------------------ processes
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_clients_without_the_credential_are_refused_and_change_nothing(
    served: StorageProxy, credential: ProxyCredential
) -> None:
    host, port = "127.0.0.1", served.port
    assert_bare_client_refused(port)

    # A TLS gRPC client that trusts the pinned certificate but has no token.
    channel = grpc.secure_channel(
        f"{host}:{port}",
        grpc.ssl_channel_credentials(root_certificates=credential.certificate_pem.encode()),
        options=[("grpc.ssl_target_name_override", SERVER_NAME)],
    )
    with channel:
        get_all = channel.unary_unary("/optuna.StorageService/GetAllStudies")
        with pytest.raises(grpc.RpcError):
            get_all(b"", timeout=5)

    # The tunnel's own client with a wrong token, or facing another certificate (a man in
    # the middle, another job's proxy).
    with pytest.raises(TunnelRefusedError, match="refused the token"):
        probe_tunnel(host, port, "x" * 43, credential.fingerprint)
    with pytest.raises(TunnelRefusedError, match="refused the token"):
        open_storage(grpcs_url(host, port, "x" * 43, credential.fingerprint))
    with pytest.raises(TunnelRefusedError, match="not the pinned"):
        open_storage(grpcs_url(host, port, credential.token, "0" * 64))

    # Nothing changed: the study, its attrs and its trials are as they were.
    study = optuna.load_study(study_name="victim", storage=open_storage(served.url))
    assert study.user_attrs == {"seer:spent": 0.0056}
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert optuna.get_all_study_names(storage=open_storage(served.url)) == ["victim"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_credentialed_client_works_here_and_in_another_process(served: StorageProxy) -> None:
    storage = open_storage(served.url)
    study = optuna.load_study(study_name="victim", storage=storage)
    trial = study.ask()
    study.tell(trial, 0.25)
    mine = optuna.create_study(study_name="mine", storage=storage)
    mine.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=3)
    assert len(mine.trials) == 3
    # A node gets the URL in SEER_STORAGE (a SkyPilot secret) and asks/tells through it.
    worker = subprocess.run(
        [sys.executable, "-c", WORKER],
        env=node_env({"SEER_STORAGE": served.url}),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert worker.returncode == 0, worker.stderr
    assert "told 3" in worker.stdout
    assert len(optuna.load_study(study_name="victim", storage=storage).trials) == 4


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_child_shows_no_secret_and_listens_only_where_it_should(
    tmp_path: Path, credential: ProxyCredential
) -> None:
    url = study_url(tmp_path)
    optuna.create_study(study_name="victim", storage=url)
    with StorageProxy(url, host="127.0.0.1", credential=credential) as proxy:
        assert proxy.pid is not None
        shown = Path(f"/proc/{proxy.pid}/cmdline").read_bytes().decode()
        shown += Path(f"/proc/{proxy.pid}/environ").read_bytes().decode(errors="replace")
        for secret in (MARKER, url, credential.token, credential.key_pem.splitlines()[1]):
            assert secret not in shown
        # Optuna's proxy has no TCP port at all: only the TLS tunnel listens.
        assert {port for _, port in listening_addresses(proxy.pid)} == {proxy.port}
    # Without a credential: plain gRPC on loopback only, the storage URL still off argv.
    with StorageProxy(url) as plain:
        assert plain.pid is not None
        assert MARKER not in Path(f"/proc/{plain.pid}/cmdline").read_bytes().decode()
        assert listening_addresses(plain.pid) == {("127.0.0.1", plain.port)}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_skypilot_backend_serves_nodes_only_behind_the_tunnel(tmp_path: Path) -> None:
    url = study_url(tmp_path)
    optuna.create_study(study_name="victim", storage=url)
    nodes = NodeStorage(None, "127.0.0.1", free_port())
    try:
        node_url = nodes.url_for(url)
        assert node_url.startswith("grpcs://seer:")
        assert_bare_client_refused(nodes.proxy_port)
        study = optuna.load_study(study_name="victim", storage=open_storage(node_url))
        assert study.study_name == "victim"
    finally:
        nodes.close()
