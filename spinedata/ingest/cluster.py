"""The Dask executor: ingest's work on an existing ``dask.distributed`` cluster (``ingest(scheduler=...)``,
``spine ingest --scheduler tcp://HOST:PORT``).

Each study is one task running ``ingest_study`` on a worker, which writes the study into the store itself
(the same atomic write as on one machine); only counts, geometry and report lines come back. So every
worker must see the input folder at the same path as this process (a shared file system), and the store:
a folder at the same path, or a URL that it reaches with the credentials and endpoint of its own
environment. ``DaskCluster.share`` checks both on every worker before any work (a probe written into the
store and read back). A task whose workers keep dying is given up by the scheduler (``KilledWorker``) and
becomes a report line, as does a study left waiting while the cluster has no worker at all.

A task that started cannot be stopped from here: leaving the executor early (an interrupt, an error)
cancels the tasks not started and waits for the running ones (``DaskCluster.stop``), so that the store's
lock is released only once no task of this run writes; a ``ClusterWarning`` says when that cannot be
confirmed.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinedata.dicom import ReadLimits, failure_reason
from spinedata.errors import ClusterError, ClusterWarning, SpineError, import_extra
from spinedata.ingest.discover import StudyJob
from spinedata.ingest.executors import Headers, batch_lost, left_out, read_batch
from spinedata.ingest.worker import StudyResult, ingest_study
from spinedata.store.layout import STAGING
from spinedata.store.objectpath import Location
from spinedata.store.urls import is_url, store_location

if TYPE_CHECKING:
    from distributed import Client

CONNECT_TIMEOUT_S = 10.0
"""How long to try to reach the scheduler."""
WORKER_WAIT_S = 30.0
"""How long a run waits for a first worker, and how long its studies wait while the cluster has none."""
POLL_S = 0.1
"""How often finished tasks are collected (as ``distributed.as_completed`` itself does)."""
WORKER_CHECK_S = 2.0
"""How often the cluster's workers are counted while tasks wait."""
STOP_WAIT_S = 120.0
"""How long leaving the executor early waits for its tasks still running on workers (the store's lock is
held meanwhile)."""
STOP_POLL_S = 0.5
"""How often the workers are asked, meanwhile, whether a task of this run still runs."""
MAY_RUN = frozenset({"waiting", "ready", "constrained", "executing", "long-running", "cancelled", "resumed"})
"""States of a task on a worker (``distributed.worker_state_machine``) in which it runs or may start;
``cancelled`` and ``resumed``: released by the scheduler while its thread still runs."""
KEY_PREFIX = "spine-ingest"
"""Keys of this module's tasks: ``spine-ingest-<run id>-<study or batch>``."""
SHARED_FOLDER = ("the workers need the input folder and the store at the same paths as this process (a shared "
                 "file system)")
SHARED_URL = ("every worker needs the store's credentials and endpoint in its own environment "
              "(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...; the cloud extra), and the input folder at the same "
              "path as this process")
"""The fix named when a worker does not see the input folder or the store (``SHARED_FOLDER``: a store
folder; ``SHARED_URL``: a store at a URL)."""
KILLED = "on the Dask cluster: the scheduler gave up on it after the workers running it died"
"""Why a task ended with ``KilledWorker`` (after ``distributed.scheduler.allowed-failures`` worker deaths)."""


class NotRun(Exception):
    """The cluster did not run a task: it had no worker for ``WORKER_WAIT_S``, or cancelled the task."""


def _distributed():
    """The ``distributed`` module, or ``ExtraNotInstalled`` naming the extra to install."""
    return import_extra("distributed", "ingest --scheduler")


def connect(scheduler: str) -> Client:
    """A ``distributed.Client`` of the scheduler at ``scheduler`` with at least one worker; ``ClusterError``
    (one line, naming the fix) when it cannot be reached or has no worker."""
    distributed = _distributed()
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler {scheduler!r} ({' '.join(str(error).split())}); "
                           "check --scheduler, or start one: `dask scheduler`, then `dask worker ADDRESS` on "
                           "each machine that sees the input and the store") from error  # fmt: skip
    try:
        _wait_for_workers(client, scheduler)
    except BaseException:
        client.close()
        raise
    return client


def _wait_for_workers(client: Client, scheduler: str) -> None:
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError as error:
        raise ClusterError(f"the Dask scheduler {scheduler!r} has no worker (waited {WORKER_WAIT_S:g} s); start "
                           f"`dask worker {scheduler}` on machines that see the input and the store") from error


def not_seen(probe: str, token: str, data_dir: str) -> str | None:
    """Run on each worker: what it does not see (None when it sees the input folder, and the store through
    the ``probe`` file or object, at a path or a URL, that the client wrote with ``token``)."""
    if not os.path.isdir(data_dir):
        return f"does not see the input folder {data_dir!r}"
    if not is_url(probe):
        try:
            if Path(probe).read_text() == token:
                return None
        except OSError:
            pass
        return f"does not see the store {str(Path(probe).parents[1])!r}"
    store = probe.rsplit("/", 2)[0]
    try:
        if store_location(probe).read_text() == token:
            return None
    except (OSError, SpineError) as error:
        return f"cannot read the store {store!r} ({' '.join(str(error).split()) or type(error).__name__})"
    return f"reads another store at {store!r}"


def still_running(prefix: str, dask_worker) -> int:
    """Run on each worker: how many tasks whose key starts with ``prefix`` run there, or may still start."""
    with dask_worker.active_threads_lock:
        keys = {str(key) for key in dask_worker.active_threads.values()}
    keys.update(str(key) for key, task in dask_worker.state.tasks.items() if task.state in MAY_RUN)
    return sum(key.startswith(prefix) for key in keys)


@contextlib.contextmanager
def session(scheduler: str | Client) -> Iterator[Client]:
    """The ``distributed.Client`` of ``scheduler``, an address (``tcp://HOST:PORT``: connected here, closed on
    exit) or a client (kept open), once the cluster has a worker."""
    if isinstance(scheduler, str):
        client = connect(scheduler)
    else:
        client = scheduler
        _wait_for_workers(client, str(getattr(client.scheduler, "address", client)))
    try:
        yield client
    finally:
        if client is not scheduler:
            client.close()


class DaskCluster:
    """The executor on a ``distributed.Client``. Use as a context manager: leaving it with tasks whose outcome
    was not taken (an interrupt, an error), or after a task was cancelled, calls ``stop``."""

    def __init__(self, client: Client):
        self.client = client
        self.distributed = _distributed()
        self.run_id = uuid.uuid4().hex[:8]
        self.outstanding: dict[str, Any] = {}
        """Futures submitted whose outcome was not taken yet, by key (each is released once taken)."""
        self.cancelled = False
        """Whether a task of this run was cancelled: its thread may still run on a worker."""
        self.store = "the store"

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc) -> None:
        left, self.outstanding = list(self.outstanding.values()), {}
        if left or self.cancelled:
            self.stop(left)

    def stop(self, futures: list) -> None:
        """Cancel ``futures``, then wait up to ``STOP_WAIT_S`` (from the cancel's end; the workers are asked at
        least once) until no worker runs or holds a task of this run (one that started finishes its study: it
        cannot be stopped from here). Confirmed by two answers in a row, so that a task the scheduler was
        handing out shows in the second; else a ``ClusterWarning``."""
        prefix = f"{KEY_PREFIX}-{self.run_id}-"
        clear, announced = 0, False
        try:
            if futures:
                self.client.cancel(futures)
            deadline = time.monotonic() + STOP_WAIT_S  # after the cancel, however long it took
            while True:  # the workers are asked at least once
                running = self._still_running(prefix)
                clear = clear + 1 if running == 0 else 0
                if clear == 2:
                    return
                if running and not announced:
                    announced = True
                    warnings.warn(f"waiting up to {STOP_WAIT_S:g} s for {running} task(s) of this ingest still "
                                  f"running on Dask workers: the lock on {self.store} is held until they end "
                                  "(interrupt again to stop waiting)", ClusterWarning, stacklevel=2)  # fmt: skip
                if time.monotonic() >= deadline:
                    break
                time.sleep(STOP_POLL_S)
        except (OSError, TimeoutError) as error:  # the scheduler does not answer
            return self._unconfirmed(f"the Dask scheduler does not answer: {' '.join(str(error).split())}")
        except KeyboardInterrupt:
            self._unconfirmed("the wait was interrupted")
            raise
        self._unconfirmed(f"not confirmed ended after {STOP_WAIT_S:g} s")

    def _still_running(self, prefix: str) -> int:
        """Tasks of this run that workers run or may start; a worker that does not answer counts as one."""
        answers = self.client.run(still_running, prefix, on_error="return")
        return sum(1 if isinstance(n, BaseException) else n for n in answers.values())

    def _unconfirmed(self, reason: str) -> None:
        warnings.warn(f"tasks of this ingest may still be writing into {self.store} on Dask workers ({reason}); "
                      "its lock is released now: wait until those workers are idle, or restart them, before "
                      "another ingest into it", ClusterWarning, stacklevel=3)  # fmt: skip

    def share(self, store: Location, data_dir: Path) -> None:
        """``ClusterError`` naming the first worker that does not see the input folder or this store (a folder
        at the same path, or a URL reached with the worker's own credentials), or cannot run spinedata;
        checked on every worker of the cluster at this moment, through a probe written into the store."""
        self.store = str(store)
        token = uuid.uuid4().hex
        probe = store / STAGING / f"cluster-check-{token}"
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(token.encode())
        try:
            answers = self.client.run(not_seen, str(probe), token, str(data_dir), on_error="return")
        finally:
            probe.unlink(missing_ok=True)
        self._refuse(answers, SHARED_FOLDER if isinstance(store, Path) else SHARED_URL)

    @staticmethod
    def _refuse(answers: dict, fix: str = SHARED_FOLDER) -> None:
        """``ClusterError`` for the first worker whose answer names what it lacks, with ``fix``."""
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                answer = (f"cannot run spinedata ({failure_reason(answer)}); install the same spine "
                          "on every worker")  # fmt: skip
            if answer:
                raise ClusterError(f"Dask worker {worker} {answer}: {fix}")

    def read_headers(self, batches: list[list[str]], limits: ReadLimits) -> Iterator[Headers]:
        """Batches as tasks, yielded in order; a batch the cluster could not read is a report line per file."""
        keys = [self._submit(read_batch, f"headers-{i}", batch, limits) for i, batch in enumerate(batches)]
        waiting: dict[int, Headers] = {}
        next_index = 0
        for index, result, error in self._outcomes(keys):
            waiting[index] = result if error is None else batch_lost(batches[index], self._batch_lost(error))
            while next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1

    def ingest(self, store: str, jobs: list[StudyJob], limits: ReadLimits) -> Iterator[StudyResult]:
        """One task per study (largest first); results as they come, a study the cluster could not run as
        its report line."""
        self.store = str(store)
        keys = [self._submit(ingest_study, f"study-{job.study_id}", store, job, limits, priority=len(jobs) - i)
                for i, job in enumerate(jobs)]  # fmt: skip
        for index, result, error in self._outcomes(keys):
            yield result if error is None else self._study_lost(jobs[index], error)

    def _submit(self, function, name: str, *args, priority: int = 0) -> str:
        """Submit ``function(*args)`` as the task ``name`` of this run; its key."""
        key = f"{KEY_PREFIX}-{self.run_id}-{name}"
        self.outstanding[key] = self.client.submit(function, *args, key=key, pure=False, priority=priority)
        return key

    def _outcomes(self, keys: list[str]) -> Iterator[tuple[int, Any, BaseException | None]]:
        """``(index, result, None)`` or ``(index, None, error)`` of the task of each key, as it finishes: one
        for every key. Tasks still waiting when the cluster has had no worker for ``WORKER_WAIT_S`` end with
        ``NotRun``."""
        index_of = {key: i for i, key in enumerate(keys)}
        pending = self.distributed.as_completed([self.outstanding[k] for k in keys], loop=self.client.loop)
        checked = with_workers = time.monotonic()
        while not pending.is_empty():
            ready = pending.next_batch(block=False)
            for future in ready:
                yield index_of[future.key], *self._take(future.key)
            if ready:
                continue
            time.sleep(POLL_S)
            now = time.monotonic()
            if now - checked < WORKER_CHECK_S:
                continue
            checked = now
            if self._n_workers() > 0:
                with_workers = now
            elif now - with_workers >= WORKER_WAIT_S:
                del pending  # it holds the futures not yet handed out
                yield from self._without_workers(keys, index_of)
                return

    def _without_workers(self, keys: list[str],
                         index_of: dict[str, int]) -> Iterator[tuple[int, Any, BaseException | None]]:
        """The outcomes of the tasks of ``keys`` not yet collected when the cluster has had no worker for
        ``WORKER_WAIT_S``: those that finished are kept, the others cancelled, each ``NotRun``."""
        left = [key for key in keys if key in self.outstanding]
        for key in [k for k in left if self.outstanding[k].status in ("finished", "error")]:
            yield index_of[key], *self._take(key)  # finished, not yet collected: kept, not lost
        left = [key for key in left if key in self.outstanding]
        if left:
            self.cancelled = True
            self.client.cancel([self.outstanding[key] for key in left])
            lost = NotRun(f"the cluster had no worker for {WORKER_WAIT_S:g} s")
            for key in left:
                self.outstanding.pop(key).release()
                yield index_of[key], None, lost

    def _take(self, key: str) -> tuple[Any, BaseException | None]:
        """The outcome of a finished task (``_outcome``); its future is released (no result stays alive)."""
        future = self.outstanding.pop(key)
        try:
            if future.status == "cancelled":
                self.cancelled = True
            return _outcome(future)
        finally:
            future.release()

    def _batch_lost(self, error: BaseException) -> str:
        """The report reason of each file of a batch of headers the cluster did not read."""
        if isinstance(error, self.distributed.KilledWorker):
            return "worker process died while reading the headers of this file's batch (" + KILLED + ")"
        if isinstance(error, NotRun):
            return f"headers not read (on the Dask cluster: {error}); re-run to retry it"
        return f"headers not read: {failure_reason(error)}"

    def _study_lost(self, job: StudyJob, error: BaseException) -> StudyResult:
        """The report line of a study the cluster did not ingest."""
        if isinstance(error, self.distributed.KilledWorker):
            return left_out(job, f"worker process died while ingesting this study ({job.n_files} files; {KILLED}); "
                                 "re-run to retry it")  # fmt: skip
        if isinstance(error, NotRun):
            return left_out(job, f"study not ingested (on the Dask cluster: {error}); re-run to retry it")
        return left_out(job, f"study left out: {failure_reason(error)}")

    def _n_workers(self) -> int:
        try:
            return len(self.client.nthreads())
        except (OSError, TimeoutError):  # the scheduler is gone: no worker either
            return 0


def _outcome(future) -> tuple[Any, BaseException | None]:
    """A finished future's ``(result, None)`` or ``(None, error)`` (a remote error is not raised here)."""
    if future.status == "finished":
        return future.result(), None
    if future.status == "cancelled":
        return None, NotRun("the task was cancelled on the cluster (its scheduler restarted or lost?)")
    return None, future.exception()
