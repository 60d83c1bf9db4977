"""Optuna's gRPC storage proxy for real on loopback: a served SQLite study, two worker
processes optimizing through ``grpc://127.0.0.1:<port>``, nothing lost after a restart."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import optuna
import pytest

from optuna_seer.storage.proxy import StorageProxy
from optuna_seer.storage.urls import open_storage, parse_grpc_url
from tests.fake_sky import node_env

WORKER = """
import sys
import optuna
from optuna_seer.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="proxy", storage=open_storage(sys.argv[1]))
study.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2, n_trials=10)
"""


def test_parse_grpc_url() -> None:
    assert parse_grpc_url("grpc://driver.internal:13000") == ("driver.internal", 13000)
    for bad in ("grpc://host", "http://host:1", "grpc://:13000", "grpc://h:port"):
        with pytest.raises(ValueError, match="grpc://host:port"):
            parse_grpc_url(bad)


def test_open_storage_refuses_empty_and_proxying_a_proxy() -> None:
    # The message names the bad value and the URL forms that work.
    with pytest.raises(ValueError, match=r"storage URL '' must be a non-empty RDB URL") as empty:
        open_storage("")
    for form in ("sqlite:///path.db", "path/to/journal.log", "grpc://host:port"):
        assert form in str(empty.value)
    with pytest.raises(TypeError, match=r"storage URL None must be a str"):
        open_storage(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'grpc://127.0.0.1:1' is already a gRPC proxy URL"):
        StorageProxy("grpc://127.0.0.1:1")
    # A tunnelled proxy's URL too, and the message does not repeat its token.
    tunnelled = "grpcs://seer:s3cret-token-of-the-job@10.0.0.2:1?pin=" + "ab" * 32
    with pytest.raises(ValueError, match=r"is already a gRPC proxy URL") as refused:
        StorageProxy(tunnelled)
    assert "s3cret" not in str(refused.value)
    assert "grpcs://seer:<token>@host:port?pin=<sha256>" in str(empty.value)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_processes_share_a_study_through_the_proxy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="proxy", storage=url)
    with StorageProxy(url, host="127.0.0.1") as proxy:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, proxy.url],
                env=node_env({}),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, out.decode()
        served = optuna.load_study(study_name="proxy", storage=open_storage(proxy.url))
        assert len(served.trials) == 20
    # The proxy is gone; the study is in SQLite, whole.
    study = optuna.load_study(study_name="proxy", storage=url)
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 20
    # A new proxy serves the same study (what a restarted driver does).
    with StorageProxy(url, host="127.0.0.1") as proxy:
        assert (
            len(optuna.load_study(study_name="proxy", storage=open_storage(proxy.url)).trials) == 20
        )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_proxy_that_cannot_start_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        StorageProxy("notadb://nowhere", host="127.0.0.1", ready_timeout_s=30).start()


def test_serving_by_hand_makes_the_folder_of_the_url_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/cloud.md's command writes the workers' URL to ~/seer/node-url; on a machine without
    # ~/seer it used to stop with FileNotFoundError before serving anything.
    from optuna_seer.storage import proxy

    served: list[tuple[str, str, int]] = []
    monkeypatch.setattr(
        proxy, "serve", lambda url, host, port, cred: served.append((url, host, port))
    )
    monkeypatch.setenv("SEER_STORAGE_URL", f"sqlite:///{tmp_path / 'study.db'}")
    url_file = tmp_path / "home" / "seer" / "node-url"
    argv = ["--host", "0.0.0.0", "--port", "13000", "--advertise-host", "10.0.0.1"]
    proxy.main([*argv, "--url-file", str(url_file)])
    assert served == [(f"sqlite:///{tmp_path / 'study.db'}", "0.0.0.0", 13000)]
    assert url_file.read_text().startswith("grpcs://seer:")
    assert "@10.0.0.1:13000" in url_file.read_text()
    assert url_file.stat().st_mode & 0o777 == 0o600
