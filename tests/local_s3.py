"""A real S3 endpoint on 127.0.0.1 (moto's threaded server): the one every test uses.

:class:`S3Server` can be stopped and started again on the same port (moto keeps the objects:
its state lives in this process), which the storage-outage tests need. :func:`local_s3` is a
context manager over it; the ``s3_server`` fixture in ``tests/conftest.py`` is another.
``S3Server.env`` is what a process needs to reach it with boto3: fake credentials and
``AWS_ENDPOINT_URL`` (which boto3 honours), so node processes reach it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from typing import Any
import urllib.request

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """Moto's S3 server on 127.0.0.1, on a port of its own that a restart keeps.

    Args:
        bucket: The bucket :meth:`start` creates (it may exist already).
    """

    def __init__(self, bucket: str = "seer-test") -> None:
        self.bucket = bucket
        self.port = 0  # the first start takes a free port; later starts reuse it
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        assert self.port, "start() the server first"
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Fake credentials and ``AWS_ENDPOINT_URL``: boto3 with these talks to this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> None:
        """Serve (again, on the same port); the first start also creates :attr:`bucket`."""
        from moto.server import ThreadedMotoServer

        first = not self.port
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = int(self._server.get_host_and_port()[1])
        if first:
            self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        """Stop serving (the objects stay, in this process); a no-op when stopped."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every bucket and object (moto's state is shared by every in-process
        server), then create :attr:`bucket` again."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request).close()
        self.client().create_bucket(Bucket=self.bucket)

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server (``kwargs`` go to ``boto3.client``)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
        }
        return boto3.client("s3", **{**options, **kwargs})


@contextlib.contextmanager
def local_s3(bucket: str = "seer-test") -> Iterator[dict[str, str]]:
    """Start moto's S3 server, create ``bucket``, yield the environment that reaches it."""
    server = S3Server(bucket)
    server.start()
    try:
        yield server.env
    finally:
        server.stop()
