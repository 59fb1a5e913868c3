"""Where a store lies: a local folder (the fast path) or a URL that fsspec and zarr-python open.

``store_location(text)`` turns what a user typed into a ``Path`` (a folder, or a ``file://`` URL) or an
``ObjectPath`` (``s3://``, ``gs://``, ``memory://``, ``zip://`` read-only, any other fsspec protocol whose
package is installed). A URL that cannot work is refused in one line naming the fix: an unknown protocol, a
missing bucket, a missing extra (``spinedata.errors.import_extra``: ``pip install 'spine[cloud]'``), a zip
file that is not there, a write to a read-only protocol. Credentials and endpoints come from the
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...), read by s3fs and botocore, or from
``storage_options``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spinedata.errors import StoreError, import_extra
from spinedata.store.objectpath import Location, ObjectPath, _Remote

URL = re.compile(r"^(?P<protocol>[A-Za-z][A-Za-z0-9+.-]+)://")
"""A URL starts with ``protocol://`` (two letters at least: ``C:\\`` is a Windows path)."""
READ_ONLY = frozenset({"zip", "http", "https"})
"""Protocols whose stores are read: ``spine ingest`` and the writer refuse them."""
BUCKETED = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
"""Protocols whose URL must name a bucket (or container): ``s3://BUCKET/PATH``."""
IN_PROCESS = frozenset({"memory"})
"""Protocols whose data live in this process only: worker processes cannot write into them."""
EXTRA_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
"""Protocols served by a package of an extra (``spinedata.errors.EXTRA_OF_MODULE`` names which)."""
EXAMPLES = "a folder, file:///PATH, s3://BUCKET/PATH, gs://BUCKET/PATH, memory://NAME or zip:///PATH.zip"


def is_url(text: str | os.PathLike) -> bool:
    """Whether ``text`` is a URL (``protocol://...``), not a local path."""
    return isinstance(text, str) and URL.match(text) is not None


def protocol_of(location: Location) -> str:
    """``"file"`` for a local folder, else the URL's protocol."""
    return "file" if isinstance(location, Path) else str(location).split("://", 1)[0].lower()


def store_location(
    store: str | os.PathLike | ObjectPath,
    storage_options: Mapping[str, Any] | None = None,
    *,
    writing: bool = False,
) -> Location:
    """The store at ``store``: a ``Path`` for a local path or a ``file://`` URL (read and written with plain
    file operations), else an ``ObjectPath``; ``StoreError`` (one line) for a URL that cannot work,
    ``ExtraNotInstalled`` for one whose package is missing.
    ``writing``: the caller will write (a read-only protocol is refused here)."""
    if isinstance(store, ObjectPath):
        if writing and store.read_only:
            _refuse_read_only(str(store), protocol_of(store))
        return store
    if not is_url(store):
        if storage_options:
            raise StoreError(f"storage_options are for store URLs (s3://...), not the local path {str(store)!r}")
        return Path(store)
    protocol = URL.match(str(store)).group("protocol").lower()
    if protocol == "file":
        return _file_path(str(store))
    url = str(store).rstrip("/") if not str(store).endswith("://") else str(store)
    if writing and protocol in READ_ONLY:
        _refuse_read_only(url, protocol)
    if protocol == "zip":
        url = _zip_url(url)
    elif protocol in BUCKETED and not url.split("://", 1)[1].split("/", 1)[0]:
        raise StoreError(f"store URL {url!r} names no bucket: write {protocol}://BUCKET/PATH.zarr")
    _check_protocol(protocol, url)
    return ObjectPath(_Remote(url, storage_options, read_only=protocol in READ_ONLY))


def _file_path(url: str) -> Path:
    """The local path of a ``file://`` URL, percent-decoded (``Path.as_uri()`` encodes spaces and accents);
    its host must be empty or ``localhost``: another host's folder cannot be opened as a local path."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    parts = urlsplit(url)
    if parts.netloc.lower() not in ("", "localhost"):
        raise StoreError(f"file URL {url!r} names the host {parts.netloc!r}; write file:///ABSOLUTE/PATH "
                         "(a folder of this machine) or mount the other machine's folder")  # fmt: skip
    if parts.query or parts.fragment:
        raise StoreError(f"file URL {url!r} has a query or fragment; percent-encode '?' as %3F and '#' as %23")
    return Path(url2pathname(parts.path) or ".")


def _refuse_read_only(url: str, protocol: str) -> None:
    raise StoreError(
        f"{url}: {protocol}:// stores are read-only; write into a folder or an object store (s3://...), "
        "then zip the folder's contents if a zip is wanted"
    )


def _zip_url(url: str) -> str:
    """``zip:///PATH.zip`` (the store at the zip's root) as fsspec's chained ``zip://::file:///PATH.zip``;
    a chained URL (``zip://INNER::OUTER``, e.g. ``zip://train.zarr::s3://b/x.zip``) is kept."""
    if "::" in url:
        return url
    path = Path(url[len("zip://"):])
    if not path.is_file():
        raise StoreError(
            f"no zip file at {str(path)!r} (from {url!r}); write zip:///ABSOLUTE/PATH.zip, or "
            "zip://FOLDER::file:///PATH.zip for a store inside a folder of the zip"
        )
    return f"zip://::file://{path.resolve()}"


def _check_protocol(protocol: str, url: str) -> None:
    """``ExtraNotInstalled`` naming the extra when fsspec, or the package of ``protocol``
    (``EXTRA_PACKAGES``), is missing; ``StoreError`` when no package knows the protocol."""
    what = f"the store {url}"
    fsspec = import_extra("fsspec", what)
    package = EXTRA_PACKAGES.get(protocol)
    try:
        if package is not None:
            import_extra(package, what)
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise StoreError(f"unknown store protocol {protocol}:// in {url!r}; a store is {EXAMPLES}") from None
    except ImportError as error:  # a package that no extra installs, or a broken install
        raise StoreError(f"{protocol}:// stores need another package: {' '.join(str(error).split())}") from None


def in_process_only(location: Location) -> bool:
    """Whether the store lives in this process's memory (``memory://``): other processes cannot see it."""
    return protocol_of(location) in IN_PROCESS
