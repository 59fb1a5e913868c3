"""A local S3-compatible server for the store-URL tests: moto's server in a thread of the test process, on a
free port of 127.0.0.1 (real HTTP, signed requests, conditional puts: no client is mocked)."""

from __future__ import annotations

import logging
import uuid

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
"""What the tests put in the environment (moto accepts any key); the endpoint goes to ``AWS_ENDPOINT_URL``."""


def start_server():
    """``(server, endpoint URL)`` of a started ``moto.server.ThreadedMotoServer``; ``server.stop()`` ends it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def new_bucket(endpoint: str) -> str:
    """Create an empty bucket with a fresh name on the server at ``endpoint``; its name."""
    import s3fs

    name = f"spine-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=endpoint, skip_instance_cache=True,
    )  # fmt: skip
    fs.mkdir(name)
    return name
