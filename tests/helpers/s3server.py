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
    try:
        fs.mkdir(name)
    finally:
        close_session(fs)
    return name


def close_session(fs) -> None:
    """Close the HTTP session of the s3fs filesystem ``fs``, if it opened one, on the event loop it runs on:
    fsspec's for a synchronous filesystem, zarr-python's for an asynchronous one (zarr's ``FsspecStore``
    opens its own). Left open, aiohttp says "Unclosed client session" on stderr whenever it is collected,
    into whichever test then runs; s3fs closes it on collection only for a synchronous filesystem, and
    only within 0.1 s."""
    client = getattr(fs, "_s3creator", None)
    if client is None:
        return
    fs._s3 = fs._s3creator = None  # a later call opens a new session
    if fs.asynchronous:
        from zarr.core.sync import sync

        sync(client.__aexit__(None, None, None))
    else:
        from fsspec.asyn import sync

        sync(fs.loop, client.__aexit__, None, None, None)


def close_filesystems() -> None:
    """Close the sessions of the s3fs filesystems fsspec keeps in this process (``close_session``), then
    forget the filesystems (and the credentials and endpoint they were made with)."""
    import s3fs

    for fs in list(s3fs.S3FileSystem._cache.values()):
        close_session(fs)
    s3fs.S3FileSystem.clear_instance_cache()
