"""Shared pieces of the elastic-executor tests: a real local S3 server, real launches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import os
from pathlib import Path
from typing import Any
import urllib.request

import boto3
import pytest

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState

REPO = Path(__file__).resolve().parent.parent
DIGITS_TRAIN = f"{REPO / 'examples' / 'lightning_digits.py'}:train"
FIXED_PARAMS: dict[str, Any] = {"lr": 0.05, "hidden": 48, "weight_decay": 1e-4}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str


@pytest.fixture(name="s3_server")
def s3_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A real moto S3 server on 127.0.0.1 (no AWS: the SDK talks to it over HTTP).

    ``AWS_ENDPOINT_URL`` and fake credentials go into the environment, so boto3 in this
    process and in every worker subprocess (which inherit it) use the local server.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its state per process, shared by every in-process server: start empty.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="seer-test")
    try:
        yield S3Server(endpoint, "seer-test")
    finally:
        server.stop()


def run_launches(backend: Backend, specs: list[LaunchSpec], timeout_s: float = 240) -> None:
    """Start ``specs`` together and wait; fail with the worker's log if one does not succeed."""
    handles = [backend.start(spec) for spec in specs]
    pending = list(handles)
    budget = timeout_s
    while pending and budget > 0:
        done = backend.wait(pending, 2.0)
        budget -= 2.0
        pending = [h for h in pending if h not in done]
    assert not pending, f"launches still running after {timeout_s} s"
    for handle in handles:
        status = backend.poll(handle)
        assert status.state is LaunchState.SUCCEEDED, status.message


def worker_env() -> dict[str, str]:
    """Small epochs for tests: one copy of the digits."""
    return {"DIGITS_REPEATS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
