"""Two DDP processes on the CPU (gloo): validation is split between them and put back together exactly, and a
whole ``train`` run writes one complete run directory."""

from __future__ import annotations

import os
import pickle
import socket

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from spinemodels.catalog import config_from_dict, get_task
from spinemodels.rundir import RunDir
from tests.helpers.spinemodels_fakes import make_fake_dataset
from tests.helpers.tiny_runs import TINY

WORLD = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(rank: int, port: int, out: str) -> None:
    """One DDP process: validate sharded and whole, then train; rank-wise results pickled to ``out``."""
    from spinemodels import distributed
    from spinemodels.trainer import validate
    from spinemodels.training import make_loader, train

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))  # fmt: skip
    info = distributed.setup("cpu")
    fake = make_fake_dataset(n_studies=5, seed=1, size=32, n_sag=10)
    config = config_from_dict(TINY["slice_finder"])
    task = get_task(config.task)(config)
    torch.manual_seed(0)
    network = task.build_network()
    data = task.build_dataset(fake, fake, fake.study_ids, train=False)
    single = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    shared = make_loader(data, 2, shuffle=False, num_workers=0, seed=0, info=info)
    whole = make_loader(data, 2, shuffle=False, num_workers=0, seed=0, info=single)
    result = {
        "sharded": validate(task, network, shared, info.device, False, False, info),
        "whole": validate(task, network, whole, info.device, False, False),
        "share": len(shared.sampler),
    }
    train(config, fake, os.path.join(out, "run"), progress=False, device="cpu")
    with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as handle:
        pickle.dump(result, handle)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_process, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    results = []
    for rank in range(WORLD):
        with open(out / f"rank{rank}.pkl", "rb") as handle:
            results.append(pickle.load(handle))
    return out, results


def test_sharded_validation_equals_the_whole_on_every_process(ddp_results):
    _, results = ddp_results
    assert sorted(r["share"] for r in results) == [2, 3]  # 5 studies: each process evaluates its own block
    for result in results:
        (loss, predictions), (whole_loss, whole_predictions) = result["sharded"], result["whole"]
        assert loss == pytest.approx(whole_loss, rel=1e-6)
        assert len(predictions) == 5 * 5  # five levels per study, each study once
        pd.testing.assert_frame_equal(predictions, whole_predictions, check_exact=False, rtol=1e-6)


def test_ddp_training_writes_one_complete_run_dir(ddp_results):
    out, _ = ddp_results
    run = RunDir(out / "run")
    folds = run.folds()
    val_ids = set(folds.loc[folds["fold"] == 0, "study_id"])
    oof = run.oof()
    assert set(oof["study_id"]) == val_ids and len(oof) == 5 * len(val_ids)  # every validation study once
    assert list(run.metrics(0)["epoch"]) == [1, 2]
