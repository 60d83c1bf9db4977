"""A real S3 endpoint on 127.0.0.1 (moto's threaded server) for checkpoint tests.

``s3_env`` is what a process needs to talk to it with boto3: fake credentials and
``AWS_ENDPOINT_URL`` (which boto3 honours), so node processes reach it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib


@contextlib.contextmanager
def local_s3(bucket: str = "seer-test") -> Iterator[dict[str, str]]:
    """Start moto's S3 server, create ``bucket``, yield the environment that reaches it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()
