"""``ObjectPath``: a place in a store at a URL (``s3://``, ``gs://``, ``memory://``, ``zip://``), with the few
``pathlib.Path`` operations the store's reader and writer use, done by fsspec.

Why: the store's code reads and writes local stores with plain file operations (the fast path, unchanged).
A store at a URL gets an ``ObjectPath`` where it would get a ``Path``: ``/``, ``name``, ``parent``,
``relative_to``, ``read_bytes``, ``is_file``, ``iterdir``, ``write_bytes``, ``unlink`` ... map to one
fsspec call each, and ``zarr_store()`` hands zarr-python its own ``zarr.storage.FsspecStore`` for arrays.
An ``ObjectPath`` has no ``__fspath__``: a local file function given one fails instead of writing a local
folder named ``s3:``. The helpers at the end (``subfolders``, ``remove_tree``, ``read_tail``, ``zarr_store``,
``put_many``) take either kind.

Object stores have no folders and no rename: ``mkdir`` does nothing, a "folder" is a key prefix, and the
writer makes a study visible by writing its metadata last (``docs/store.md``). Errors of the transport
(no credentials, an unreachable endpoint, access denied) become one-line ``StoreError``s naming the fix;
``FileNotFoundError`` and ``FileExistsError`` keep their meaning.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

from spinedata.errors import StoreError

LISTINGS = {"use_listings_cache": False}
"""fsspec options of every filesystem opened here: never answer a listing from a cache (other processes,
the ingest workers, write the same store)."""


class _Remote:
    """The store's root at a URL: the URL as given, its fsspec filesystem, the root's path in it."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, read_only: bool = False):
        import fsspec

        self.url = url
        self.storage_options = dict(storage_options or {})
        self.read_only = read_only
        with translated(url):
            self.fs, base = fsspec.url_to_fs(url, **{**LISTINGS, **self.storage_options})
        self.base = base.rstrip("/")
        self.protocol = url.split("://", 1)[0]
        self._zarr = None
        self.fetched: dict[str, bytes] = {}
        """Objects fetched ahead by ``prefetched``, each handed out once."""

    def __reduce__(self):
        return _Remote, (self.url, self.storage_options, self.read_only)

    def path_of(self, key: str) -> str:
        """The filesystem path of a store-relative key."""
        return f"{self.base}/{key}" if self.base and key else (self.base or key)

    def url_of(self, key: str) -> str:
        """The URL of a store-relative key (for messages), in the form the store's URL was given."""
        if not key:
            return self.url
        if "::" in self.url:  # a chained URL (zip://inner::file:///x.zip): the key goes on the first part
            first, rest = self.url.split("::", 1)
            joint = "" if first.endswith(("://", "/")) else "/"
            return f"{first}{joint}{key}::{rest}"
        return f"{self.url.rstrip('/')}/{key}"

    def zarr_root(self):
        """zarr-python's ``FsspecStore`` at the root, read-only, made once."""
        if self._zarr is None:
            from zarr.storage import FsspecStore

            with translated(self.url):
                self._zarr = FsspecStore.from_url(
                    self.url, storage_options={**LISTINGS, **self.storage_options}, read_only=True
                )
        return self._zarr

    def writable(self, key: str) -> None:
        if self.read_only:
            raise StoreError(
                f"{self.url_of(key)}: {self.protocol}:// stores are read-only; write the store into a folder "
                "or an object store (s3://...) and zip that"
            )


class ObjectPath:
    """A store-relative key under a ``_Remote`` root; the ``pathlib.Path`` subset the store code uses."""

    __slots__ = ("_remote", "key")

    def __init__(self, remote: _Remote, key: str = ""):
        self._remote = remote
        self.key = key.strip("/")

    # --- pure path operations -------------------------------------------------------------------------
    def __truediv__(self, name: str | os.PathLike) -> ObjectPath:
        name = str(name).strip("/")
        return ObjectPath(self._remote, f"{self.key}/{name}" if self.key else name)

    def __str__(self) -> str:
        return self._remote.url_of(self.key)

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (self._remote.url, self.key) == (other._remote.url, other.key)

    def __hash__(self) -> int:
        return hash((self._remote.url, self.key))

    @property
    def name(self) -> str:
        return (self.key or self._remote.base).rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self._remote, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    @property
    def read_only(self) -> bool:
        return self._remote.read_only

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if not isinstance(other, ObjectPath) or other._remote.url != self._remote.url:
            raise ValueError(f"{self} is not below {other}")
        if other.key and not (self.key == other.key or self.key.startswith(other.key + "/")):
            raise ValueError(f"{self} is not below {other}")
        return PurePosixPath(self.key[len(other.key):].lstrip("/") or ".")

    @property
    def _path(self) -> str:
        return self._remote.path_of(self.key)

    # --- reading -------------------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when there is none."""
        fetched = self._remote.fetched.pop(self._path, None)
        if fetched is not None:
            return fetched
        with translated(self):
            return self._remote.fs.cat_file(self._path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def is_file(self) -> bool:
        with translated(self):
            return bool(self._remote.fs.isfile(self._path))

    def is_dir(self) -> bool:
        """Whether any object lies below this prefix."""
        with translated(self):
            return bool(self._remote.fs.isdir(self._path))

    def exists(self) -> bool:
        with translated(self):
            return bool(self._remote.fs.exists(self._path))

    def _listing(self) -> list[dict]:
        with translated(self):
            try:
                self._remote.fs.invalidate_cache(self._path)
                return self._remote.fs.ls(self._path, detail=True)
            except FileNotFoundError:
                return []

    def file_sizes(self) -> dict[str, int]:
        """Name -> size of the objects right below this prefix (one listing)."""
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0)
                for e in self._listing() if e.get("type") == "file"}  # fmt: skip

    def iterdir(self) -> Iterator[ObjectPath]:
        """Objects and prefixes right below this prefix (none when it holds nothing)."""
        for entry in self._listing():
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if name:
                yield self / name

    def stat(self) -> SimpleNamespace:
        """``st_size`` only."""
        with translated(self):
            return SimpleNamespace(st_size=int(self._remote.fs.size(self._path)))

    def read_range(self, start: int, end: int) -> bytes:
        with translated(self):
            return self._remote.fs.cat_file(self._path, start=start, end=end)

    # --- writing (refused on a read-only store) ------------------------------------------------------
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing: object stores have no folders."""
        self._remote.writable(self.key)

    def write_bytes(self, data: bytes) -> int:
        self._remote.writable(self.key)
        with translated(self, writing=True):
            self._remote.fs.pipe_file(self._path, bytes(data))
        return len(data)

    def create_exclusive(self, data: bytes) -> bool:
        """Write the object only if there is none (a conditional put: ``If-None-Match: *`` on S3);
        False when one exists. ``StoreError`` where the installed s3fs or botocore would drop the condition."""
        self._remote.writable(self.key)
        if self._remote.protocol in ("s3", "s3a"):
            check_conditional_puts(str(self))
        with translated(self, writing=True):
            try:
                self._remote.fs.pipe_file(self._path, bytes(data), mode="create")
            except FileExistsError:
                return False
        return True

    def unlink(self, missing_ok: bool = False) -> None:
        self._remote.writable(self.key)
        with translated(self, writing=True):
            try:
                self._remote.fs.rm_file(self._path)
            except FileNotFoundError:
                if not missing_ok:
                    raise

    def remove_tree(self) -> None:
        """Delete every object below this prefix (nothing when there is none)."""
        self._remote.writable(self.key)
        with translated(self, writing=True), contextlib.suppress(FileNotFoundError):
            paths = self._remote.fs.find(self._path)
            if paths:
                self._remote.fs.rm(paths)

    def zarr_store(self):
        """zarr-python's read-only ``FsspecStore`` rooted here."""
        from zarr.storage import FsspecStore

        root = self._remote.zarr_root()
        if not self.key:
            return root
        return FsspecStore(fs=root.fs, path=f"{root.path}/{self.key}" if root.path else self.key, read_only=True)


Location = Path | ObjectPath
"""Where a store, or a node of it, lies: a local folder or a place at a URL."""


def subfolders(folder: Location) -> list[tuple[str, Location]]:
    """``(name, path)`` of the folders (key prefixes) right inside ``folder``; none when it is missing."""
    if isinstance(folder, ObjectPath):
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in folder._listing() if e.get("type") == "directory"]
        return [(name, folder / name) for name in names if name]
    try:
        return [(entry.name, Path(entry.path)) for entry in os.scandir(folder) if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_tree(folder: Location) -> None:
    """Delete ``folder`` and all below it (local, or a key prefix); nothing when it is missing. Any other
    failure is raised (``OSError``, a transport's ``StoreError``): what is still there is never "removed"."""
    if isinstance(folder, ObjectPath):
        folder.remove_tree()
        return
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(folder)


def read_tail(path: Location, n: int, size: int | None = None) -> tuple[int, bytes]:
    """``(size, last n bytes)`` of a file or object (fewer bytes when it is shorter); ``size`` when known."""
    size = path.stat().st_size if size is None else size
    start = max(0, size - n)
    if isinstance(path, ObjectPath):
        return size, path.read_range(start, size)
    with open(path, "rb") as handle:
        handle.seek(start)
        return size, handle.read(n)


def read_head(path: Location, n: int) -> bytes:
    """The first ``n`` bytes of a file or object (fewer when it is shorter)."""
    if isinstance(path, ObjectPath):
        return path.read_range(0, n)
    with open(path, "rb") as handle:
        return handle.read(n)


def zarr_store(folder: Location):
    """A read-only zarr-python store rooted at ``folder``: ``LocalStore`` or ``FsspecStore``."""
    if isinstance(folder, ObjectPath):
        return folder.zarr_store()
    from zarr.storage import LocalStore

    return LocalStore(folder, read_only=True)


@contextlib.contextmanager
def prefetched(paths: list[Location]):
    """Inside, the first ``read_bytes`` of each of these objects answers from one concurrent fetch made on
    entry (a store at a URL: a request each, all at once, instead of one after another; what could not be
    fetched is read as usual, so errors are the usual ones). Local paths are read as usual. What was not
    read is dropped on exit."""
    remote = [p for p in paths if isinstance(p, ObjectPath)]
    if not remote:
        yield
        return
    owner = remote[0]._remote
    with translated(remote[0]):
        got = owner.fs.cat([p._path for p in remote], on_error="omit")
    owner.fetched.update(got)
    try:
        yield
    finally:
        for key in got:
            owner.fetched.pop(key, None)


def put_many(objects: Mapping[ObjectPath, bytes]) -> None:
    """Write several objects of one store at once (concurrently where fsspec can, as s3fs does)."""
    if not objects:
        return
    first = next(iter(objects))
    remote = first._remote
    remote.writable(first.key)
    with translated(first, writing=True):
        remote.fs.pipe({path._path: bytes(data) for path, data in objects.items()})


CONDITIONAL_PUTS = {"s3fs": (2024, 12, 0), "botocore": (1, 35, 21)}
"""The first releases that send ``If-None-Match: *`` for ``pipe_file(mode="create")``; older ones filter the
condition out without a word and overwrite (an ingest lock that locks nothing)."""


def check_conditional_puts(url: str) -> None:
    """``StoreError`` (one line) when an installed s3fs or botocore is older than ``CONDITIONAL_PUTS``, or has
    no package metadata to tell its version by (installed without pip: a traceback otherwise)."""
    from importlib.metadata import PackageNotFoundError, version

    for package, first in CONDITIONAL_PUTS.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = None
        if installed is None or tuple(int(part) for part in re.findall(r"\d+", installed)[:3]) < first:
            why = f"{package} {installed} cannot" if installed else f"{package} has no package metadata: it may not"
            raise StoreError(f"cannot lock {url}: {why} create an object exclusively (it would overwrite another "
                             f"ingest's lock); pip install -U 'spine[cloud]' ({package}>={'.'.join(map(str, first))})")


# --- errors of the transport, as one line -------------------------------------------------------------

CREDENTIAL_HINT = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`",
}


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Exception classes of the HTTP clients under s3fs and gcsfs, where installed."""
    found: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError

        found.append(BotoCoreError)
    with contextlib.suppress(ImportError):
        from aiohttp import ClientError

        found.append(ClientError)
    return tuple(found)


def _hint(protocol: str) -> str:
    return CREDENTIAL_HINT.get({"s3a": "s3", "gcs": "gs"}.get(protocol, protocol), "check the storage options")


def describe_failure(where: str, protocol: str, error: BaseException) -> str:
    """One line saying what went wrong reaching ``where`` and how to fix it."""
    name = type(error).__name__
    text = " ".join(str(error).split()) or name
    if "Credential" in name or "credentials" in text.lower():
        return f"no credentials for {where}: {_hint(protocol)}"
    if "Connect" in name or "Timeout" in name or "Connection" in text:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        fix = f"check the endpoint (AWS_ENDPOINT_URL={endpoint})" if endpoint and protocol in ("s3", "s3a") else \
            "check the network and the endpoint"  # fmt: skip
        return f"cannot reach {where} ({text}); {fix}"
    if isinstance(error, PermissionError):
        return f"access denied to {where} ({text}); {_hint(protocol)} with a key that may use it"
    return f"{where}: {name}: {text}"


@contextlib.contextmanager
def translated(where: ObjectPath | str, *, writing: bool = False):
    """Run fsspec calls; ``FileNotFoundError`` / ``FileExistsError`` pass (they answer the caller's
    question), other failures of the transport become one-line ``StoreError``s. When ``writing``, a
    missing bucket or path is a ``StoreError`` too."""
    url = str(where)
    protocol = url.split("://", 1)[0]
    try:
        yield
    except FileExistsError:
        raise
    except FileNotFoundError as error:
        if writing:
            raise StoreError(f"cannot write {url}: no such bucket or path ({error}); create the bucket first") from error
        raise
    except (OSError, *_transport_errors()) as error:
        raise StoreError(describe_failure(url, protocol, error)) from error
