"""Training writes a complete run directory, resumes exactly, and explains missing pretrained weights."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spinemodels.catalog import config_from_dict
from spinemodels.errors import ConfigError, RunDirError
from spinemodels.rundir import RunDir
from spinemodels.runfiles import load_checkpoint
from spinemodels.trainer import BestCheckpoint, Callback, LastCheckpoint, LoopState, fit, make_ema
from spinemodels.training import lr_factor, train
from tests.helpers.spinemodels_fakes import make_fake_dataset, one_torch_thread  # noqa: F401
from tests.helpers.tiny_runs import TINY


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=6, seed=1, size=32, n_sag=10)


@pytest.mark.parametrize("task", ["slice_finder", "keypoints"])
def test_training_writes_a_complete_run_dir(fake, tmp_path, task):
    run = train(config_from_dict(TINY[task]), fake, tmp_path / task, progress=False)
    assert RunDir(tmp_path / task).config().to_dict() == config_from_dict(TINY[task]).to_dict()
    folds = run.folds()
    assert sorted(folds["study_id"]) == sorted(fake.study_ids) and set(folds["fold"]) == {0, 1}
    assert run.trained_folds() == [0]
    metrics = run.metrics(0)
    assert list(metrics["epoch"]) == [1, 2]
    assert metrics[["train_loss", "val_loss"]].notna().all().all()
    best = torch.load(run.fold_dir(0) / "best.pt", weights_only=True)
    assert best["val_loss"] == pytest.approx(metrics["val_loss"].min())
    oof = run.oof()
    val_ids = set(folds.loc[folds["fold"] == 0, "study_id"])
    assert set(oof["study_id"]) == val_ids and len(oof) == 5 * len(val_ids)
    if task == "keypoints":
        offsets = pd.read_csv(run.fold_dir(0) / "offsets.csv")
        assert len(offsets) == 20 and (offsets["n"] == 6 - len(val_ids)).all()  # training studies only
        assert {"error_px", "row", "col"} <= set(oof.columns)
    else:
        assert {"slice", "slice_true", "confidence"} <= set(oof.columns)
        assert (oof["slice_true"] >= 0).all()


def test_resume_continues_from_the_last_epoch_exactly(fake, tmp_path):
    straight = config_from_dict(TINY["slice_finder"], ["train.epochs=3"])
    train(straight, fake, tmp_path / "straight", progress=False)
    first = config_from_dict(TINY["slice_finder"])
    train(first, fake, tmp_path / "resumed", progress=False)
    with pytest.raises(RunDirError, match="pass --resume"):
        train(first, fake, tmp_path / "resumed", progress=False)
    run = train(straight, fake, tmp_path / "resumed", progress=False, resume=True)
    resumed, reference = run.metrics(0), RunDir(tmp_path / "straight").metrics(0)
    assert list(resumed["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(resumed.drop(columns=["seconds", "samples_per_s"]),
                                  reference.drop(columns=["seconds", "samples_per_s"]), atol=1e-5, rtol=1e-4)


def test_a_run_dir_of_another_config_is_refused(fake, tmp_path):
    train(config_from_dict(TINY["slice_finder"], ["train.epochs=1"]), fake, tmp_path / "run", progress=False)
    other = config_from_dict(TINY["slice_finder"], ["optim.lr=0.5", "train.epochs=1"])
    with pytest.raises(ConfigError, match=r"differs in optim\.lr"):
        train(other, fake, tmp_path / "run", progress=False, fold=1)


def test_pretrained_weights_offline_give_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    config = config_from_dict(TINY["slice_finder"], ["model.pretrained=true", "model.backbone=resnet14t"])
    from spinemodels.catalog import get_task

    with pytest.raises(ConfigError, match="not available offline.*pretrained: false"):
        get_task("slice_finder")(config).build_network()


def test_learning_rate_schedules():
    optim = config_from_dict({"task": "keypoints", "optim": {"schedule": "step", "milestones": [2, 4],
                                                             "gamma": 0.5}}).optim
    assert [lr_factor(e, optim, 6) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = config_from_dict({"task": "keypoints", "optim": {"schedule": "cosine", "warmup_epochs": 1}}).optim
    factors = [lr_factor(e, cosine, 5) for e in range(5)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(1.0) and factors[-1] < 0.2


class _LinearTask:
    """The smallest task ``fit`` accepts: a linear regression, loss = mean squared error."""

    def forward(self, model, batch):
        return model(batch["x"])

    def loss(self, outputs, batch):
        return torch.nn.functional.mse_loss(outputs, batch["y"])

    def batch_size_of(self, batch):
        return len(batch["x"])

    def predict(self, outputs, batch):
        return []

    def evaluate(self, predictions):
        return {}


class _Recorder(Callback):
    def __init__(self):
        self.weights, self.val_losses, self.averaged = [], [], []

    def on_step(self, state, loss, n_samples):
        self.weights.append([p.detach().clone() for p in state.model.parameters()])

    def on_epoch_end(self, state, row, predictions):
        self.val_losses.append(row["val_loss"])
        self.averaged.append({k: v.clone() for k, v in state.ema.module.state_dict().items()})


def test_weight_average_follows_every_step_and_is_what_is_validated_and_kept(tmp_path):
    """With ``ema_decay`` d the averaged weights are w1, then d * ema + (1 - d) * w after each step; the
    validation loss is that of the averaged weights, and best.pt holds them."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    batches = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(5)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    decay = 0.8
    state = LoopState(model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1),
                      scaler=torch.amp.GradScaler("cpu", enabled=False), ema=make_ema(model, decay))  # fmt: skip
    recorder = _Recorder()
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    val_loader = torch.utils.data.DataLoader(batches[:2], batch_size=None)
    fit(_LinearTask(), state, loader, val_loader, epochs=3, device=torch.device("cpu"),
        callbacks=(recorder, BestCheckpoint(tmp_path / "best.pt")))  # fmt: skip
    expected = recorder.weights[0]
    for weights in recorder.weights[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
    for averaged, value in zip(state.ema.module.parameters(), expected, strict=True):
        torch.testing.assert_close(averaged, value)
    assert not torch.allclose(next(state.ema.module.parameters()), next(model.parameters()))
    with torch.no_grad():
        loss = sum(float(torch.nn.functional.mse_loss(state.ema.module(b["x"]), b["y"])) * 4 for b in batches[:2]) / 8
    assert recorder.val_losses[-1] == pytest.approx(loss)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["val_loss"] == min(recorder.val_losses)
    for key, value in recorder.averaged[best["epoch"] - 1].items():
        torch.testing.assert_close(best["model"][key], value)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        make_ema(model, 1.0)
    assert make_ema(model, 0.0) is None


def test_training_with_a_weight_average_resumes_exactly(fake, tmp_path):
    straight = config_from_dict(TINY["slice_finder"], ["train.epochs=3", "optim.ema_decay=0.9"])
    train(straight, fake, tmp_path / "straight", progress=False)
    train(config_from_dict(TINY["slice_finder"], ["optim.ema_decay=0.9"]), fake, tmp_path / "resumed", progress=False)
    run = train(straight, fake, tmp_path / "resumed", progress=False, resume=True)
    resumed, reference = run.metrics(0), RunDir(tmp_path / "straight").metrics(0)
    pd.testing.assert_frame_equal(resumed.drop(columns=["seconds", "samples_per_s"]),
                                  reference.drop(columns=["seconds", "samples_per_s"]), atol=1e-5, rtol=1e-4)
    last = torch.load(run.fold_dir(0) / "last.pt", weights_only=True)
    assert last["ema"] is not None
    best = torch.load(run.fold_dir(0) / "best.pt", weights_only=True)
    assert best["val_loss"] == pytest.approx(resumed["val_loss"].min())


class Planted:
    """Unpickling this creates ``marker``: what a planted checkpoint could do with ``weights_only=False``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def plant(path: Path, marker: Path, *, legacy: bool = False) -> None:
    """Write a checkpoint-looking file at ``path`` whose unpickling would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": Planted(marker), "epoch": 1}
    if legacy:
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)


@pytest.mark.parametrize("legacy", [False, True], ids=["torch.save", "plain pickle"])
def test_a_planted_last_pt_is_refused_without_running_it(fake, tmp_path, legacy):
    marker = tmp_path / "planted_ran"
    plant(tmp_path / "run" / "fold_0" / "last.pt", marker, legacy=legacy)
    with pytest.raises(RunDirError, match=r"refused to load .*last\.pt: not a checkpoint of plain") as info:
        train(config_from_dict(TINY["slice_finder"]), fake, tmp_path / "run", progress=False, resume=True)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    last = tmp_path / "run" / "fold_0" / "last.pt"
    pickle.loads(last.read_bytes()) if legacy else torch.load(last, weights_only=False)  # the unsafe way
    assert marker.exists()  # runs the payload: the refusal above is what kept it from running


def test_a_planted_best_pt_is_refused_without_running_it(fake, tmp_path):
    run = train(config_from_dict(TINY["slice_finder"], ["train.epochs=1"]), fake, tmp_path / "run", progress=False)
    marker = tmp_path / "planted_ran"
    plant(run.fold_dir(0) / "best.pt", marker)
    with pytest.raises(RunDirError, match=r"refused to load .*best\.pt"):
        run.load_network(0)
    assert not marker.exists()


def _garble(path: Path, how: str) -> None:
    good = path.read_bytes()
    garbled = {"empty": b"", "text": b"not a checkpoint\n", "truncated": good[: len(good) // 2]}
    if how == "list":
        torch.save([1, 2, 3], path)
    elif how == "other model":
        torch.save({**torch.load(path, weights_only=True), "model": {"weight": torch.zeros(2)}}, path)
    else:
        path.write_bytes(garbled[how])


@pytest.mark.parametrize("how", ["empty", "text", "truncated", "list", "other model"])
def test_a_garbled_last_pt_is_a_one_line_error(fake, tmp_path, how):
    config = config_from_dict(TINY["slice_finder"], ["train.epochs=1"])
    run = train(config, fake, tmp_path / "run", progress=False)
    _garble(run.fold_dir(0) / "last.pt", how)
    with pytest.raises(RunDirError, match=r"last\.pt") as info:
        train(config_from_dict(TINY["slice_finder"]), fake, tmp_path / "run", progress=False, resume=True)
    assert "\n" not in str(info.value)
    assert run.metrics(0)["epoch"].tolist() == [1]  # nothing was trained on top of it


def test_last_pt_keeps_every_random_state_as_plain_data(tmp_path):
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = LoopState(model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1),
                      scaler=torch.amp.GradScaler("cpu", enabled=False))  # fmt: skip
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    LastCheckpoint(tmp_path / "last.pt").on_epoch_end(state, {}, None)
    expected = (random.random(), np.random.random(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state.restore(load_checkpoint(tmp_path / "last.pt"))
    assert (random.random(), np.random.random(), torch.rand(1)) == expected
