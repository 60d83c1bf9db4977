"""A real GCS endpoint on 127.0.0.1 (gcp-storage-emulator, pure Python, in memory) that gcsfs
reaches through ``STORAGE_EMULATOR_HOST``, with anonymous credentials passed through the
checkpoint stores' ``SEER_CHECKPOINT_STORAGE_OPTIONS``.

:func:`local_gcs` sets both variables through ``monkeypatch`` and yields ``gs://<bucket>``;
it skips the test when gcsfs or the emulator is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib

import pytest

from optuna_seer._ports import free_port

GCS_BUCKET = "seer-gcs"


@contextlib.contextmanager
def local_gcs(monkeypatch: pytest.MonkeyPatch, bucket: str = GCS_BUCKET) -> Iterator[str]:
    """Serve a fake GCS on 127.0.0.1 for this process; ``gs://<bucket>``."""
    pytest.importorskip("gcsfs")
    server_module = pytest.importorskip("gcp_storage_emulator.server")
    import fsspec
    import gcsfs.core

    port = free_port()
    server = server_module.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SEER_CHECKPOINT_STORAGE_OPTIONS", '{"token": "anon", "project": "seer"}')
    # gcsfs's default class first asks the (real) storage-control API whether a bucket is
    # hierarchical, which a fake server does not serve; the plain client skips that.
    previous = fsspec.get_filesystem_class("gs")
    fsspec.register_implementation("gs", gcsfs.core.GCSFileSystem, clobber=True)
    try:
        yield f"gs://{bucket}"
    finally:
        fsspec.register_implementation("gs", previous, clobber=True)
        server.stop()
