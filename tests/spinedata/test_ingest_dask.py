"""Ingest on a Dask cluster (``ingest(scheduler=...)``, ``spine ingest --scheduler``) and Dask-backed images
(``open_dataset(path, chunks=...)``), on a scheduler and two worker processes on this machine."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import spinedata as sd
from spinedata.errors import ClusterError, ClusterWarning, ExtraNotInstalled
from spinedata.ingest import ingest
from spinedata.report import read_report
from tests.helpers.cli_helpers import cli_error
from tests.helpers.ingest_data import write_competition_dataset, write_competition_series
from tests.helpers.stores import REPORT, assert_same_store, local_files, stored_objects, without_report

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def cluster():
    """A scheduler in this process and two worker processes (one thread each) behind nannies, which restart
    a worker that dies; the scheduler gives a task up at the first worker that dies running it."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                      silence_logs=50) as local:  # fmt: skip
            yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def dataset(tmp_path):
    """Two studies in the competition layout, plus a file that is not DICOM in a series of study 1001."""
    data = tmp_path / "data"
    truth = write_competition_dataset(data)
    (data / "train_images" / "1001" / "10011" / "junk.dcm").write_bytes(b"not a DICOM file")
    return data, truth


def assert_same_as_local(local: Path, remote: Path) -> None:
    """The two stores read the same through ``open_dataset``, have the same report lines and hold the same
    files, byte for byte (``tests.helpers.stores``)."""
    expected = sd.open_dataset(local)
    assert expected.study_ids
    assert_same_store(expected, sd.open_dataset(remote))
    assert read_report(local / REPORT) == read_report(remote / REPORT)
    assert without_report(local_files(local)) == without_report(local_files(remote))


def test_a_store_ingested_on_the_cluster_equals_a_local_one(dataset, tmp_path, cluster):
    data, truth = dataset
    local = ingest(data, tmp_path / "local.zarr", workers=2)
    seen = []
    remote = ingest(data, tmp_path / "remote.zarr", scheduler=cluster.scheduler_address,
                    progress=lambda *args: seen.append(args))  # fmt: skip
    assert (remote.n_studies, remote.n_written, remote.n_complete, remote.n_labels) == (2, 2, 2, 2)
    assert remote.skipped == local.skipped and len(remote.skipped) == 1  # the bad file, once, on both
    assert Path(remote.skipped[0].path).name == "junk.dcm" and remote.skipped[0].reason.startswith("not a DICOM")
    assert seen[0] == ("ingest", 0, 2) and seen[-1] == ("ingest", 2, 2)
    assert_same_as_local(tmp_path / "local.zarr", tmp_path / "remote.zarr")
    np.testing.assert_array_equal(sd.open_dataset(tmp_path / "remote.zarr").study("1002").series["10022"]
                                  .stacks[0].read(), truth[("1002", "10022")].volume)  # fmt: skip
    again = ingest(data, tmp_path / "remote.zarr", scheduler=cluster.scheduler_address)  # resumed: nothing to do
    assert (again.n_written, again.n_already) == (0, 2) and again.skipped == local.skipped


def test_an_s3_store_ingested_on_the_cluster_equals_a_local_one(dataset, tmp_path, client, s3_endpoint, s3_bucket):
    """Each worker reaches the object store itself, with the credentials and endpoint of its environment."""
    from tests.helpers.s3server import CREDENTIALS

    environment = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    client.run(lambda values: os.environ.update(values), environment)  # a bound method would update a copy
    data, _ = dataset
    local = ingest(data, tmp_path / "local.zarr", workers=1)
    url = f"s3://{s3_bucket}/cluster.zarr"
    remote = ingest(data, url, scheduler=client)
    assert (remote.n_written, remote.n_complete) == (2, 2) and remote.skipped == local.skipped
    assert without_report(stored_objects(url)) == without_report(local_files(tmp_path / "local.zarr"))
    assert_same_store(sd.open_dataset(tmp_path / "local.zarr"), sd.open_dataset(url))


def test_a_plain_folder_on_the_cluster_through_the_command_line(tmp_path, cluster, monkeypatch, capsys):
    """Headers of a plain folder are read in batches on the workers; an unreadable file is a report line."""
    from cli.app import app
    from cli.errors import run_app

    folder = tmp_path / "dump"
    write_competition_series(folder / "a", study_uid="1.2.3", n_slices=5, seed=1)
    write_competition_series(folder / "b", study_uid="1.2.4", n_slices=3, seed=2, angles_deg=(0, 0, 0))
    (folder / "b" / "broken.dcm").write_bytes(b"DICM" * 10)
    assert ingest(folder, tmp_path / "local.zarr", workers=1).n_complete == 2
    monkeypatch.setattr(sys, "argv", ["spine", "ingest", str(folder), str(tmp_path / "remote.zarr"),
                                      "--scheduler", cluster.scheduler_address, "--no-progress"])  # fmt: skip
    with pytest.raises(SystemExit) as done:
        run_app(app)
    assert done.value.code == 0 and "2 studies written" in capsys.readouterr().out
    assert [Path(s.path).name for s in read_report(tmp_path / "remote.zarr" / "ingest_report.csv")] == ["broken.dcm"]
    assert_same_as_local(tmp_path / "local.zarr", tmp_path / "remote.zarr")


def die_on_1001(store_root, job, *args):
    """Stands in for ``ingest_study`` on a worker: the worker process dies on study 1001."""
    from spinedata.ingest.worker import ingest_study

    if job.study_id == "1001":
        os._exit(3)
    return ingest_study(store_root, job, *args)


def test_a_worker_dying_mid_study_is_a_report_line(dataset, tmp_path, cluster, monkeypatch):
    data, truth = dataset
    out = tmp_path / "out.zarr"
    monkeypatch.setattr("spinedata.ingest.cluster.ingest_study", die_on_1001)  # pickled by name: the workers see it
    first = ingest(data, out, scheduler=cluster.scheduler_address)
    died = [s for s in first.skipped if s.reason.startswith("worker process died")]
    assert [s.study_id for s in died] == ["1001"] and "Dask" in died[0].reason
    assert sd.open_dataset(out).study_ids == ["1002"] and len(sd.open_dataset(out).labels) == 2  # the run completed
    assert any(s.study_id == "1001" for s in read_report(out / "ingest_report.csv"))
    monkeypatch.undo()
    second = ingest(data, out, scheduler=cluster.scheduler_address)
    assert (second.n_written, second.n_complete) == (1, 2)
    np.testing.assert_array_equal(sd.open_dataset(out).study("1001").series["10011"].stacks[0].read(),
                                  truth[("1001", "10011")].volume)  # fmt: skip


def slow_on_1001(store_root, job, *args):
    """Stands in for ``ingest_study`` on a worker: study 1001 waits until the file ``go`` appears beside the
    store (60 s at most); each study leaves ``<study>.done`` there once written."""
    from spinedata.ingest.worker import ingest_study

    go, deadline = Path(store_root).parent / "go", time.monotonic() + 60
    while job.study_id == "1001" and not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = ingest_study(store_root, job, *args)
    (Path(store_root).parent / f"{job.study_id}.done").write_text("")
    return result


def interrupt_after_one(stage: str, done: int, total: int) -> None:
    """A progress callback that interrupts the run (as Ctrl-C would) once the first study is in."""
    if stage == "ingest" and done == 1:
        raise KeyboardInterrupt


def release_once_waited_for(monkeypatch, go: Path) -> None:
    """Study 1001 (``slow_on_1001``) goes on once ``DaskCluster.stop`` has seen a task of the run still on a
    worker: a ``stop`` that does not ask the workers leaves it waiting."""
    from spinedata.ingest.cluster import DaskCluster

    asked = DaskCluster._still_running

    def still_running(self, prefix: str) -> int:
        running = asked(self, prefix)
        if running:
            go.touch()
        return running

    monkeypatch.setattr(DaskCluster, "_still_running", still_running)


def test_an_interrupted_run_releases_the_lock_only_after_its_running_tasks_end(dataset, tmp_path, cluster,
                                                                                monkeypatch):  # fmt: skip
    """Study 1001 still runs on a worker when the run is interrupted: ``ingest`` waits for it (saying so) and
    only then releases the lock; the study is whole in the store."""
    data, _ = dataset
    out = tmp_path / "out.zarr"
    monkeypatch.setattr("spinedata.ingest.cluster.ingest_study", slow_on_1001)
    release_once_waited_for(monkeypatch, tmp_path / "go")
    with pytest.warns(ClusterWarning, match=r"waiting up to 120 s for 1 task\(s\) of this ingest still running"):
        with pytest.raises(KeyboardInterrupt):
            ingest(data, out, scheduler=cluster.scheduler_address, progress=interrupt_after_one)
    assert (tmp_path / "1001.done").exists() and not (out / ".ingest.lock").exists()
    assert sd.open_dataset(out).study_ids == ["1001", "1002"]
    monkeypatch.undo()
    again = ingest(data, out, scheduler=cluster.scheduler_address)
    assert (again.n_written, again.n_already, again.n_complete) == (0, 2, 2)


def test_a_task_still_running_after_the_wait_is_a_warning(dataset, tmp_path, cluster, monkeypatch):
    """When the running task outlasts ``STOP_WAIT_S``, the lock is released with a warning that says so."""
    data, _ = dataset
    monkeypatch.setattr("spinedata.ingest.cluster.ingest_study", slow_on_1001)
    monkeypatch.setattr("spinedata.ingest.cluster.STOP_WAIT_S", 2.0)
    with pytest.warns(ClusterWarning) as warned:
        with pytest.raises(KeyboardInterrupt):
            ingest(data, tmp_path / "out.zarr", scheduler=cluster.scheduler_address, progress=interrupt_after_one)
    lines = [str(w.message) for w in warned]
    assert len(lines) == 2 and lines[0].startswith("waiting up to 2 s for 1 task(s)")
    assert re.fullmatch(r"tasks of this ingest may still be writing into .*out.zarr on Dask workers \(not confirmed "
                        r"ended after 2 s\); its lock is released now: wait .*, or restart them, .*", lines[1])
    assert not (tmp_path / "1001.done").exists()  # the warning was due: the task still runs
    (tmp_path / "go").touch()
    deadline = time.monotonic() + 30
    while not (tmp_path / "1001.done").exists() and time.monotonic() < deadline:  # leave the workers idle
        time.sleep(0.1)
    assert (tmp_path / "1001.done").exists()


def test_futures_are_released_once_their_outcome_is_taken(dataset, tmp_path, client):
    """Neither the driver nor the cluster keeps a study's result once it was handed out."""
    from spinedata.dicom import DEFAULT_LIMITS
    from spinedata.ingest.cluster import DaskCluster
    from spinedata.ingest.discover import discover_competition
    from spinedata.store.writer import create_or_open_store

    data, _ = dataset
    store = create_or_open_store(tmp_path / "out.zarr", split="train", source=str(data))
    jobs = discover_competition(data, "train").jobs
    with DaskCluster(client) as executor:
        results = list(executor.ingest(str(store), jobs, DEFAULT_LIMITS))
        assert sorted(r.study_id for r in results) == ["1001", "1002"] and executor.outstanding == {}
        prefix = f"spine-ingest-{executor.run_id}-"
        held = None
        for _ in range(50):  # a release reaches the scheduler a moment later
            held = client.run_on_scheduler(lambda dask_scheduler: [k for k in dask_scheduler.tasks
                                                                   if str(k).startswith(prefix)])  # fmt: skip
            if not held:
                break
            time.sleep(0.1)
        assert held == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_and_nothing_is_written(dataset, tmp_path, monkeypatch, capsys):
    data, _ = dataset
    monkeypatch.setattr("spinedata.ingest.cluster.CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    err = cli_error(monkeypatch, capsys, ["ingest", str(data), str(tmp_path / "out.zarr"), "--scheduler", address])
    assert err.startswith(f"error: cannot reach the Dask scheduler {address!r}") and "\n" not in err
    assert "dask scheduler" in err and "Traceback" not in err
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        ingest(data, tmp_path / "out.zarr", scheduler="not-an-address")
    assert not (tmp_path / "out.zarr").exists()
    err = cli_error(monkeypatch, capsys, ["ingest", str(data), str(tmp_path / "out.zarr"), "--scheduler", address,
                                          "--workers", "2"])  # fmt: skip
    assert err == ("error: workers and scheduler (--workers, --scheduler) exclude each other: the cluster's "
                   "workers ingest")


def test_without_the_dask_extra_the_error_names_it(dataset, tmp_path, monkeypatch, capsys):
    data, _ = dataset
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    err = cli_error(monkeypatch, capsys, ["ingest", str(data), str(tmp_path / "o.zarr"), "--scheduler", "tcp://h:1"])
    assert err == ("error: ingest --scheduler needs the dask extra: pip install 'spine[dask]' "
                   "(distributed is not installed)")  # fmt: skip
    assert not (tmp_path / "o.zarr").exists()
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ExtraNotInstalled, match=r"pip install 'spine\[dask\]'"):
        sd.open_dataset(tmp_path, chunks={})


def test_a_cluster_without_workers_is_one_line(dataset, tmp_path, monkeypatch):
    data, _ = dataset
    monkeypatch.setattr("spinedata.ingest.cluster.WORKER_WAIT_S", 0.5)
    with distributed.LocalCluster(processes=True, n_workers=0, dashboard_address=":0", silence_logs=50) as empty:
        with pytest.raises(ClusterError, match="has no worker .*start `dask worker"):
            ingest(data, tmp_path / "out.zarr", scheduler=empty.scheduler_address)
    assert not (tmp_path / "out.zarr").exists()


def test_studies_left_without_a_worker_are_report_lines(dataset, tmp_path, monkeypatch):
    """The cluster loses its only worker once the run has started: the studies wait ``WORKER_WAIT_S``, then
    each is a report line, and the run (labels, report) completes."""
    from spinedata.ingest.cluster import DaskCluster

    data, _ = dataset
    monkeypatch.setattr("spinedata.ingest.cluster.WORKER_WAIT_S", 0.5)
    monkeypatch.setattr("spinedata.ingest.cluster.WORKER_CHECK_S", 0.2)
    monkeypatch.setattr(DaskCluster, "share", lambda self, store, data_dir: self.client.retire_workers())
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as alone:  # fmt: skip
        result = ingest(data, tmp_path / "out.zarr", scheduler=alone.scheduler_address)
    lines = [(s.study_id, s.reason) for s in result.skipped if not s.path]
    assert lines == [(study_id, "study not ingested (on the Dask cluster: the cluster had no worker for 0.5 s); "
                                "re-run to retry it") for study_id in ("1001", "1002")]  # fmt: skip
    assert result.n_complete == 0 and result.report.is_file()
    assert list(sd.open_dataset(tmp_path / "out.zarr").labels["stack"]) == [-1, -1]  # kept, not resolvable


class _Answers:
    """A client whose workers answer ``run`` with fixed answers."""

    def __init__(self, answers):
        self.answers = answers

    def run(self, function, *args, on_error="raise"):
        return self.answers


def test_workers_that_do_not_see_the_store_are_one_line(tmp_path):
    from spinedata.ingest.cluster import DaskCluster, not_seen

    store, data = tmp_path / "s.zarr", tmp_path / "data"
    store.mkdir()
    data.mkdir()
    probe = store / ".staging" / "check"
    probe.parent.mkdir()
    probe.write_text("token")
    assert not_seen(str(probe), "token", str(data)) is None
    assert not_seen(str(probe), "other", str(data)) == f"does not see the store {str(store)!r}"
    assert not_seen(str(probe), "token", str(tmp_path / "elsewhere")).startswith("does not see the input folder")
    answers = {"tcp://a:1": None, "tcp://b:1": f"does not see the store {str(store)!r}"}
    with pytest.raises(ClusterError, match=r"^Dask worker tcp://b:1 does not see the store .* shared file system"):
        DaskCluster(_Answers(answers)).share(store, data)
    with pytest.raises(ClusterError, match=r"cannot run spinedata .*ModuleNotFoundError.*install the same spine"):
        DaskCluster(_Answers({"tcp://a:1": ModuleNotFoundError("No module named 'spinedata'")})).share(store, data)
    assert not list((store / ".staging").glob("cluster-check-*"))  # the probe file is removed


def forget_credentials(nowhere: str) -> None:
    """Run on a worker: no AWS credentials in its environment, nor in files or the instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(AWS_SHARED_CREDENTIALS_FILE=nowhere, AWS_CONFIG_FILE=nowhere, AWS_EC2_METADATA_DISABLED="true")


def test_workers_without_the_credentials_of_a_store_url_are_one_line(dataset, tmp_path, s3_bucket):
    """This process reaches the store, its worker has no credentials: the probe written into the store is not
    read back, and the run stops before any work with the fix in one line."""
    data, _ = dataset
    url = f"s3://{s3_bucket}/cluster.zarr"
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as local:  # fmt: skip
        with distributed.Client(local, set_as_default=False) as client:
            client.run(forget_credentials, str(tmp_path / "none"))
            with pytest.raises(ClusterError) as refused:
                ingest(data, url, scheduler=client)
    message = str(refused.value)
    assert message.startswith("Dask worker tcp://") and f"cannot read the store {url!r} (no credentials " in message
    assert message.endswith("every worker needs the store's credentials and endpoint in its own environment "
                            "(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...; the cloud extra), and the input folder at "
                            "the same path as this process") and "\n" not in message  # fmt: skip
    assert sorted(stored_objects(url)) == ["studies/zarr.json", "zarr.json"]  # no probe, no lock, no study


def test_a_store_url_is_probed_on_the_workers(tmp_path):
    """``not_seen`` reads the probe object at its URL; ``share`` refuses with the fix for URL stores and removes
    the probe; a probe left by a killed run goes with the next run's ``clean_stale``."""
    from spinedata.ingest.cluster import DaskCluster, not_seen
    from spinedata.store.urls import store_location
    from spinedata.store.writer import clean_stale

    data = tmp_path / "data"
    data.mkdir()
    url = f"memory://probe-{os.getpid()}-{time.monotonic_ns()}/s.zarr"
    store = store_location(url, writing=True)
    (store / ".staging" / "cluster-check-1").write_bytes(b"token")
    probe = f"{url}/.staging/cluster-check-1"
    assert not_seen(probe, "token", str(data)) is None
    assert not_seen(probe, "other", str(data)) == f"reads another store at {url!r}"
    assert not_seen(f"{url}/.staging/cluster-check-2", "token", str(data)).startswith(f"cannot read the store {url!r}")
    answers = {"tcp://a:1": None, "tcp://b:1": f"cannot read the store {url!r} (no credentials)"}
    with pytest.raises(ClusterError, match=r"^Dask worker tcp://b:1 cannot read the store .*credentials and endpoint"):
        DaskCluster(_Answers(answers)).share(store, data)
    assert [p.name for p in (store / ".staging").iterdir()] == ["cluster-check-1"]  # share's probe is removed
    assert clean_stale(store) == [".staging/cluster-check-1"] and not (store / ".staging").is_dir()


class _Future:
    """A future that ended as told (``status``: finished, error, pending)."""

    def __init__(self, key, status, value):
        self.key, self.status, self.value, self.released = key, status, value, False

    def result(self):
        return self.value

    def exception(self):
        return self.value

    def release(self):
        self.released = True


class _Silent:
    """An ``as_completed`` that never reports a future (as when the cluster's workers are gone)."""

    def __init__(self, futures, loop=None):
        pass

    def next_batch(self, block=True):
        return []

    def is_empty(self):
        return False


class _Workerless:
    """A client of a cluster without workers whose tasks have the given ends."""

    loop = None

    def __init__(self, ends):
        self.ends, self.futures = list(ends), []

    def submit(self, function, *args, key, pure, priority):
        self.futures.append(_Future(key, *self.ends.pop(0)))
        return self.futures[-1]

    def cancel(self, futures):
        for future in futures:
            future.status = "cancelled" if future.status == "pending" else future.status

    def nthreads(self):
        return {}

    def run(self, function, *args, on_error="raise"):
        return {}


def test_studies_finished_but_not_collected_when_the_workers_are_gone_are_kept(monkeypatch):
    """Every study gets its result or its report line: one finished, one failed and one waiting when the
    cluster is left without workers before any was collected."""
    from types import SimpleNamespace

    from spinedata.dicom import DEFAULT_LIMITS
    from spinedata.ingest.cluster import DaskCluster
    from spinedata.ingest.discover import StudyJob
    from spinedata.ingest.worker import StudyResult

    for name in ("WORKER_WAIT_S", "WORKER_CHECK_S", "POLL_S", "STOP_POLL_S"):
        monkeypatch.setattr(f"spinedata.ingest.cluster.{name}", 0)
    client = _Workerless([("finished", StudyResult("1001", written=True)), ("pending", None),
                          ("error", ValueError("boom"))])  # fmt: skip
    jobs = [StudyJob(study_id, ()) for study_id in ("1001", "1002", "1003")]
    with DaskCluster(client) as executor:
        executor.distributed = SimpleNamespace(as_completed=_Silent, KilledWorker=distributed.KilledWorker)
        results = {r.study_id: r for r in executor.ingest("s3://b/x.zarr", jobs, DEFAULT_LIMITS)}
    assert sorted(results) == ["1001", "1002", "1003"] and results["1001"].written
    assert [s.reason for s in results["1002"].skipped] == [
        "study not ingested (on the Dask cluster: the cluster had no worker for 0 s); re-run to retry it"]
    assert [s.reason for s in results["1003"].skipped] == ["study left out: unexpected ValueError: boom"]
    assert executor.outstanding == {} and all(future.released for future in client.futures)


class _SlowCancel(_Workerless):
    """A client whose ``cancel`` takes longer than ``STOP_WAIT_S``; its workers run no task of the run."""

    def __init__(self):
        super().__init__([("pending", None)])
        self.asked = 0

    def cancel(self, futures):
        time.sleep(0.3)
        super().cancel(futures)

    def run(self, function, *args, on_error="raise"):
        self.asked += 1
        return {"tcp://a:1": 0}


def test_a_slow_cancel_still_asks_the_workers(monkeypatch):
    """The wait for the workers starts once the cancel has returned: they are asked, and their two answers
    confirm that no task of the run is left, so no warning."""
    import warnings

    from spinedata.ingest.cluster import DaskCluster

    monkeypatch.setattr("spinedata.ingest.cluster.STOP_WAIT_S", 0.2)
    monkeypatch.setattr("spinedata.ingest.cluster.STOP_POLL_S", 0)
    client = _SlowCancel()
    executor = DaskCluster(client)
    executor._submit(lambda: None, "study-1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusterWarning)
        executor.__exit__(None, None, None)
    assert client.asked == 2 and client.futures[0].status == "cancelled"


def test_a_dask_backed_image_equals_the_eager_one(synth_store, client):
    eager, lazy = sd.open_dataset(synth_store), sd.open_dataset(synth_store, chunks={})
    n_stacks = 0
    for study_id in eager.study_ids:
        for series_id, series in eager.study(study_id).series.items():
            for stack, other in zip(series.stacks, lazy.study(study_id).series[series_id].stacks, strict=True):
                image, dask_image = stack.image, other.image
                assert isinstance(dask_image.data, dask.array.Array)
                stored = tuple(min(c, n) for c, n in zip(other._image.chunks, other.shape, strict=True))
                assert dask_image.data.chunksize == stored  # the store's own chunks
                assert dask_image.dims == image.dims and dask_image.attrs == image.attrs
                np.testing.assert_array_equal(dask_image.instance_number, image.instance_number)
                values = image.values
                np.testing.assert_array_equal(dask_image.values, values)  # Dask's threads
                np.testing.assert_array_equal(client.compute(dask_image.data).result(), values)  # the cluster's
                np.testing.assert_array_equal(other.affine, stack.affine)
                np.testing.assert_array_equal(other.positions, stack.positions)
                n_stacks += 1
    assert n_stacks
    study_id = eager.study_ids[0]
    series_id = next(iter(eager.study(study_id).series))
    stack = sd.open_dataset(synth_store, chunks={"slice": -1}).study(study_id).series[series_id].stacks[0]
    assert stack.image.data.chunks[0] == (stack.shape[0],)  # one chunk along the slices
    np.testing.assert_array_equal(stack.image.isel(slice=slice(1, 4)).values,
                                  eager.study(study_id).series[series_id].stacks[0].image.isel(slice=slice(1, 4)))
