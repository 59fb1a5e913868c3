"""Stage 2: grading datasets (crops at the labelled points), network, metric-shaped losses, training, classify."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spinedata.constants import CONDITIONS, LEVELS, SEVERITY_WEIGHTS, TARGETS, target_name
from spinedata.crops import crop_around
from spinedata.metric import score, weighted_log_loss
from spinemodels.calibration import Calibration, weighted_prior_logits
from spinemodels.catalog import config_from_dict, get_task
from spinemodels.data.grading import GRADE_GROUPS, CropSettings, GradeDataset, make_grade_samples
from spinemodels.data.views import points_for_group
from spinemodels.errors import ConfigError, RunDirError
from spinemodels.grade_audit import audit_grades
from spinemodels.grading_loss import any_severe_loss, weighted_cross_entropy
from spinemodels.inference.classify import ClassifyError, classify
from spinemodels.inference.runs import runs_for
from spinemodels.networks.grader import SliceSequenceGrader, grid_outputs
from spinemodels.rundir import RunDir
from spinemodels.tasks.grading import GRADE_TASKS
from spinemodels.training import train
from tests.helpers.spinemodels_fakes import make_fake_dataset
from tests.helpers.tiny_runs import tiny_grader_config, train_runs

SETTINGS = CropSettings(image_size=24, side_mm=30.0, n_slices=3)


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=4, seed=3, size=32, n_sag=10)


@pytest.fixture(scope="module")
def runs(fake, tmp_path_factory):
    tasks = ("grade_spinal", "grade_foraminal", "grade_subarticular")
    return train_runs({task: tiny_grader_config(task) for task in tasks}, fake, tmp_path_factory.mktemp("grade_runs"))


def test_samples_hold_each_level_and_side_with_its_target(fake):
    group = GRADE_GROUPS["foraminal"]
    samples = make_grade_samples(fake.labels, fake.targets, fake.study_ids, group, need_points=True)
    assert [s.study_id for s in samples] == fake.study_ids
    sample = samples[2]
    targets = fake.targets.set_index("study_id").loc[sample.study_id]
    for i, level in enumerate(LEVELS):
        for k, condition in enumerate(group.conditions):
            assert sample.targets[i][k] == targets[target_name(condition, level)]
            label = fake.labels[(fake.labels.study_id == sample.study_id) & (fake.labels.condition == condition)
                                & (fake.labels.level == level)].iloc[0]
            assert sample.points[i][k].world == pytest.approx((label.world_x, label.world_y, label.world_z))
            assert sample.points[i][k].series_id == "2"


def test_dataset_crops_are_the_crops_of_the_labelled_points(fake):
    group = GRADE_GROUPS["subarticular"]
    samples = make_grade_samples(fake.labels, fake.targets, fake.study_ids[:2], group, need_points=True)
    item = GradeDataset(fake, samples, group, SETTINGS, train=False)[1]
    assert item["image"].shape == (5, 2, 3, 24, 24) and item["image"].dtype == torch.float32
    assert item["present"].all() and item["target"].shape == (5, 2)
    point = samples[1].points[3][1]  # right subarticular L4/L5: mirrored
    stack = fake.study(samples[1].study_id).series[point.series_id].stacks[point.stack]
    volume = stack.read()
    low, high = np.percentile(volume, [1, 99])
    expected = crop_around(volume, stack.geometry, point.world, 30.0, 3, 24, intensity_range=(low, high))
    np.testing.assert_allclose(item["image"][3, 1].numpy(), expected[:, :, ::-1], atol=1e-6)


def test_training_items_are_augmented_reproducibly_and_missing_points_masked(fake):
    group = GRADE_GROUPS["spinal"]
    labels = fake.labels[~((fake.labels.study_id == "100") & (fake.labels.level == "L2/L3"))]
    samples = make_grade_samples(labels, fake.targets, ["100"], group, need_points=True)
    data = GradeDataset(fake, samples, group, SETTINGS, train=True)
    first, again, other = data[(0, 7, 0)], data[(0, 7, 0)], data[(0, 7, 1)]
    assert torch.equal(first["image"], again["image"]) and not torch.equal(first["image"], other["image"])
    assert first["present"][:, 0].tolist() == [True, False, True, True, True]
    assert first["target"][1, 0] == -1 and not first["image"][1].any()
    plain = GradeDataset(fake, samples, group, SETTINGS, train=False)[(0, 7, 0)]
    assert not torch.equal(plain["image"], first["image"])


def test_network_shapes_and_gradients():
    net = SliceSequenceGrader("resnet10t", pretrained=False, d_model=16, n_layers=1, n_heads=2, n_sides=2)
    crops = torch.rand(6, 3, 24, 24, requires_grad=True)
    level, side = torch.tensor([0, 1, 2, 3, 4, 4]), torch.tensor([0, 1, 0, 1, 0, 1])
    logits = net(crops, level, side)
    assert logits.shape == (6, 3) and net.features(crops, level, side).shape == (6, 16)
    (logits * torch.randn_like(logits)).sum().backward()
    assert torch.count_nonzero(crops.grad) == 0  # the head starts at zero: the output is the prior logit
    assert net.head.weight.grad.abs().sum() > 0  # ...and learns from the first step
    torch.nn.init.normal_(net.head.weight)
    crops.grad = None
    (net(crops, level, side) * torch.randn(6, 3)).sum().backward()
    assert torch.isfinite(crops.grad).all() and (crops.grad.abs().sum(dim=(0, 2, 3)) > 0).all()
    grid = torch.rand(2, 5, 2, 3, 24, 24)
    features, grid_logits = grid_outputs(net.eval(), grid)
    assert features.shape == (2, 5, 2, 16) and grid_logits.shape == (2, 5, 2, 3)
    # the grid is the per-level network applied to each (level, side) with its ids
    one = net(grid[1, 3, 1][None], torch.tensor([3]), torch.tensor([1]))
    torch.testing.assert_close(grid_logits[1, 3, 1], one[0])


def test_a_grader_with_slices_as_channels_sees_every_slice_of_the_crop():
    net = SliceSequenceGrader("resnet10t", pretrained=False, d_model=16, n_layers=1, n_heads=2, n_sides=2,
                              slices_as_channels=3)
    torch.nn.init.normal_(net.head.weight)  # the head starts at zero (the priors): give it weights
    crops = torch.rand(4, 3, 24, 24, requires_grad=True)
    level, side = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 1])
    (net(crops, level, side) * torch.randn(4, 3)).sum().backward()
    assert (crops.grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # each slice reaches the output
    with pytest.raises(ValueError, match="3 channels"):
        net(torch.rand(4, 5, 24, 24), level, side)


def test_untrained_grader_predicts_the_weighted_priors_of_its_level_and_side():
    net = SliceSequenceGrader("resnet10t", pretrained=False, d_model=16, n_layers=1, n_heads=2, n_sides=2).eval()
    counts = np.zeros((5, 2, 3))
    counts[..., 0], counts[3, 1] = 10, [4, 3, 1]
    net.prior_logit.copy_(torch.as_tensor(weighted_prior_logits(counts), dtype=torch.float32))
    probs = net(torch.rand(2, 3, 24, 24), torch.tensor([3, 0]), torch.tensor([1, 0])).softmax(-1).detach().numpy()
    w = np.array([4.5, 3.5, 1.5]) * SEVERITY_WEIGHTS
    np.testing.assert_allclose(probs[0], w / w.sum(), rtol=1e-5)
    w = np.array([10.5, 0.5, 0.5]) * SEVERITY_WEIGHTS
    np.testing.assert_allclose(probs[1], w / w.sum(), rtol=1e-5)


def test_losses_equal_the_metric_on_the_same_probabilities():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(8, 5, 3)), dtype=torch.float32)
    target = torch.tensor(rng.choice([-1, 0, 1, 2], size=(8, 5), p=[0.1, 0.5, 0.25, 0.15]))
    probs = logits.softmax(-1).numpy().reshape(-1, 3)
    codes = target.numpy().reshape(-1)
    known = codes >= 0
    want = weighted_log_loss(codes[known], probs[known], np.asarray(SEVERITY_WEIGHTS)[codes[known]])
    assert float(weighted_cross_entropy(logits, target)) == pytest.approx(want, rel=1e-5)
    # any_severe_spinal: write the batch as 8 studies' spinal rows and score them with the metric
    truth = pd.DataFrame({"study_id": [str(i) for i in range(8)], **{t: 0 for t in TARGETS}})
    sub_rows = []
    for i in range(8):
        for j, level in enumerate(LEVELS):
            truth.loc[i, target_name(CONDITIONS[0], level)] = int(codes[i * 5 + j])
            p = probs[i * 5 + j]
            sub_rows.append([f"{i}_{target_name(CONDITIONS[0], level)}", *p])
        sub_rows += [[f"{i}_{t}", 1.0, 0.0, 0.0] for t in TARGETS if not t.startswith("spinal")]
    submission = pd.DataFrame(sub_rows, columns=["row_id", "normal_mild", "moderate", "severe"])
    assert float(any_severe_loss(logits, target)) == pytest.approx(score(submission, truth)["any_severe_spinal"],
                                                                   rel=1e-4)
    nothing = torch.full((2, 5), -1)
    assert float(weighted_cross_entropy(logits[:2], nothing)) == 0.0 == float(any_severe_loss(logits[:2], nothing))


@pytest.mark.slow
def test_training_writes_priors_and_out_of_fold_grades(runs, fake):
    run = RunDir(runs["grade_subarticular"])
    assert run.trained_folds() == [0]
    priors = pd.read_csv(run.fold_dir(0) / "priors.csv", index_col="target")
    assert list(priors.index) == list(TARGETS)
    np.testing.assert_allclose(priors.sum(axis=1), 1.0)
    oof = run.oof()
    val = set(run.folds().query("fold == 0")["study_id"])
    assert set(oof["study_id"]) == val and len(oof) == 10 * len(val)
    assert set(oof["condition"]) == {CONDITIONS[3], CONDITIONS[4]}
    np.testing.assert_allclose(oof[["normal_mild", "moderate", "severe"]].sum(axis=1), 1.0, rtol=1e-5)
    assert "wll" in run.metrics(0).columns
    assert "any_severe" in RunDir(runs["grade_spinal"]).metrics(0).columns


@pytest.mark.slow
def test_classify_gives_25_rows_per_study_and_says_what_fell_back(runs, fake):
    coords = fake.labels.copy()
    drop = (coords.study_id == "101") & (coords.condition == CONDITIONS[1])  # no left foraminal point
    coords.loc[(coords.study_id == "102") & (coords.condition == CONDITIONS[3]), "series_id"] = "1"  # wrong role
    coords = coords[~drop]
    submission, warnings = classify(fake, coords, list(runs.values()), progress=False)
    assert len(submission) == 25 * len(fake.study_ids)
    assert submission["row_id"].tolist()[:25] == [f"100_{t}" for t in TARGETS]
    np.testing.assert_allclose(submission[["normal_mild", "moderate", "severe"]].sum(axis=1), 1.0)
    assert any("study 101: 5 rows" in w for w in warnings)
    assert any("study 102 Left Subarticular Stenosis" in w and "not Axial T2" in w for w in warnings)
    priors = pd.read_csv(RunDir(runs["grade_spinal"]).fold_dir(0) / "priors.csv", index_col="target")
    row = submission.set_index("row_id").loc["101_left_neural_foraminal_narrowing_l3_l4"].to_numpy()
    np.testing.assert_allclose(row, priors.loc["left_neural_foraminal_narrowing_l3_l4"].to_numpy(), rtol=1e-6)
    assert np.isfinite(score(submission, fake.targets)["score"])


@pytest.mark.slow
def test_classify_without_a_group_run_uses_priors_and_refuses_other_runs(runs, fake, tmp_path):
    spinal = tmp_path / "spinal"
    shutil.copytree(runs["grade_spinal"], spinal)
    calibration = Calibration(temperature={"spinal": 1.7}, any_severe_scale=1.3)
    calibration.save(spinal / "calibration.json")
    oof = RunDir(spinal).oof()
    val_ids = sorted(oof["study_id"].unique())
    submission, warnings = classify(fake, fake.labels, [spinal], study_ids=val_ids, progress=False)
    assert len(submission) == 25 * len(val_ids)
    assert any("no grading run for foraminal" in w for w in warnings)
    # inference crops and predictions are exactly those of validation (same points, same fold model), with
    # the run's calibration applied as classify applies it
    for _, rows in oof.groupby("study_id"):
        probs = calibration.apply(CONDITIONS[0], rows[["normal_mild", "moderate", "severe"]].to_numpy())
        order = [LEVELS.index(level) for level in rows["level"]]
        grid = np.full((5, 3), np.nan)
        grid[order] = probs
        oof.loc[rows.index, ["normal_mild", "moderate", "severe"]] = calibration.apply_study_spinal(grid)[order]
    oof["row_id"] = oof["study_id"] + "_" + [target_name(c, lv) for c, lv in zip(oof["condition"], oof["level"],
                                                                                 strict=True)]
    merged = oof.merge(submission, on="row_id", suffixes=("_oof", ""))
    assert len(merged) == 5 * len(val_ids)
    np.testing.assert_allclose(merged[["normal_mild", "moderate", "severe"]].to_numpy(),
                               merged[["normal_mild_oof", "moderate_oof", "severe_oof"]].to_numpy(), atol=1e-5)
    other = tmp_path / "kp"
    config = {"task": "keypoints", "model": {"encoder": "resnet18", "pretrained": False, "encoder_depth": 3,
                                             "decoder_channels": [8, 8, 8]},
              "data": {"image_size": 32, "channels": 3, "cache_mb": 16}, "train": tiny_grader_config("x")["train"]}
    train(config_from_dict(config), fake, other, progress=False)
    with pytest.raises(ClassifyError, match="classify takes"):
        classify(fake, fake.labels, [other], progress=False)
    # a folder of runs: classify takes the graders in it and leaves the keypoints run
    folder = tmp_path / "all_runs"
    folder.mkdir()
    (folder / "kp").symlink_to(other)
    for task, path in runs.items():
        (folder / task).symlink_to(path)
    taken = runs_for([folder], (*GRADE_TASKS, "grade_master"), "classify", ClassifyError)
    assert sorted(task for _, task in taken) == sorted(runs)
    assert {run.path.resolve() for run, _ in taken} == {Path(p).resolve() for p in runs.values()}
    with pytest.raises(RunDirError, match="neither a run directory nor a folder of runs"):
        runs_for([tmp_path / "spinal" / "fold_0"], tuple(GRADE_TASKS), "classify")


@pytest.mark.slow
def test_cli_classify_writes_the_submission(runs, fake, tmp_path, monkeypatch):
    import spinedata
    from cli.app import app

    monkeypatch.setattr(spinedata, "open_dataset", lambda path: fake)
    coords = tmp_path / "coords.csv"
    fake.labels.to_csv(coords, index=False)
    out = tmp_path / "sub" / "submission.csv"
    args = ["classify", str(tmp_path / "store.zarr"), "--coords", str(coords), "--out", str(out), "--no-progress",
            "--model", str(runs["grade_spinal"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert list(written.columns) == ["row_id", "normal_mild", "moderate", "severe"]
    assert len(written) == 25 * len(fake.study_ids)
    assert "no grading run for foraminal" in result.stderr


def master_config(runs: dict, **train_overrides) -> dict:
    return {"task": "grade_master",
            "model": {"spinal_run": str(runs["grade_spinal"]), "foraminal_run": str(runs["grade_foraminal"]),
                      "subarticular_run": str(runs["grade_subarticular"]), "hidden": 16},
            "data": {"cache_mb": 64}, "optim": {"lr": 1e-3, "schedule": "constant"},
            "train": {**tiny_grader_config("x")["train"], **train_overrides}}


@pytest.fixture(scope="module")
def master_run(runs, fake, tmp_path_factory):
    return train(config_from_dict(master_config(runs)), fake, tmp_path_factory.mktemp("master") / "master",
                 progress=False)


@pytest.mark.slow
def test_master_starts_from_the_graders_and_grades_conditions_without_a_crop(runs, fake, master_run, tmp_path):
    run = master_run
    metrics = run.metrics(0)
    assert metrics["score"].iloc[0] == pytest.approx(metrics["val_loss"].iloc[0], rel=1e-4)  # loss follows metric
    task, network = run.load_network(0)
    spinal_best = torch.load(RunDir(runs["grade_spinal"]).fold_dir(0) / "best.pt", weights_only=True)["model"]
    for name, value in spinal_best.items():  # frozen graders: the master carries fold 0's weights unchanged
        torch.testing.assert_close(network.graders["spinal"].state_dict()[name], value)
    coords = fake.labels[~((fake.labels.study_id == "101") & (fake.labels.condition == CONDITIONS[1]))]
    submission, warnings = classify(fake, coords, [run.path], progress=False)
    assert len(submission) == 25 * len(fake.study_ids) and not any("priors" in w for w in warnings)
    np.testing.assert_allclose(submission[["normal_mild", "moderate", "severe"]].sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="same train.n_folds and train.seed"):  # another split: refused
        train(config_from_dict(master_config(runs), ["train.n_folds=3"]), fake, tmp_path / "m3", progress=False)


@pytest.mark.slow
def test_classify_with_a_master_cuts_each_crop_once_and_gives_the_master_its_training_inputs(runs, fake, master_run,
                                                                                             monkeypatch):
    import spinemodels.data.grading as grading
    import spinemodels.inference.classify as classify_module
    from spinemodels.tasks.master import master_parts

    cut: Counter = Counter()

    def counting(volume, geometry, world, *args, mirror=False, **kwargs):
        cut[(geometry.affine.tobytes(), tuple(world), args, mirror)] += 1
        return crop_around(volume, geometry, world, *args, mirror=mirror, **kwargs)

    batches = []

    def recording(network, batch):
        batches.append(batch)
        return master_probabilities(network, batch)

    master_probabilities = classify_module.master_probabilities
    monkeypatch.setattr(grading, "crop_around", counting)
    monkeypatch.setattr(classify_module, "master_probabilities", recording)
    graders = [runs[t] for t in ("grade_spinal", "grade_foraminal", "grade_subarticular")]
    classify(fake, fake.labels, graders, progress=False)
    alone = sum(cut.values())
    cut.clear()
    classify(fake, fake.labels, [*graders, master_run.path], progress=False)
    assert sum(cut.values()) == alone == len(cut) > 0  # the master reads the graders' crops: none cut twice
    task, _ = master_run.load_network(0)
    assert len(batches) == len(fake.study_ids)  # one fold: one batch per study
    for study_id, batch in zip(fake.study_ids, batches, strict=True):
        item = master_parts(fake, fake, fake.labels, None, [study_id], task.runs(), train=False, augment=False,
                            cache_mb=64)[0]
        for key, value in item.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(batch[key][0], value, rtol=0, atol=0)


def test_grade_audit_lists_labels_far_from_the_out_of_fold_grades():
    oof = pd.DataFrame({"study_id": ["a", "a", "b", "b"], "condition": [CONDITIONS[0]] * 4,
                        "level": LEVELS[:2] * 2, "normal_mild": [0.9, 0.1, 0.5, 0.2], "moderate": [0.05, 0.1, 0.3, 0.3],
                        "severe": [0.05, 0.8, 0.2, 0.5], "target": [2, 0, 1, -1]})
    found = audit_grades(oof)
    # expected grades 0.15 (label 2: off 1.85), 1.7 (label 0: off 1.7), 0.7 (label 1: off 0.3), unlabelled
    assert list(zip(found["study_id"], found["level"], found["label"], strict=True)) == [
        ("a", LEVELS[0], "Severe"), ("a", LEVELS[1], "Normal/Mild")]
    np.testing.assert_allclose(found["expected_grade"], [0.15, 1.7])
    np.testing.assert_allclose(found["p_label"], [0.05, 0.1])


@pytest.mark.slow
def test_training_leaves_out_the_excluded_labels_and_the_cli_writes_them(runs, fake, tmp_path):
    from cli.app import app

    findings = tmp_path / "grades.csv"
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "store.zarr"), "--grades", str(runs["grade_spinal"]),
                                      "--grade-findings", str(findings)])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(findings, dtype={"study_id": str})
    assert list(written.columns)[:3] == ["study_id", "condition", "level"]
    folds = RunDir(runs["grade_spinal"]).folds()
    trained_on = folds.loc[folds["fold"] != 0, "study_id"].astype(str).iloc[0]  # a study of fold 0's training
    excluded = pd.DataFrame({"study_id": [trained_on] * 2, "condition": [CONDITIONS[0]] * 2, "level": LEVELS[:2]})
    excluded.to_csv(findings, index=False)
    config = tiny_grader_config("grade_spinal")
    config["data"]["exclude_labels"] = str(findings)
    run = train(config_from_dict(config), fake, tmp_path / "run", progress=False)
    shown = pd.read_csv(run.fold_dir(0) / "train_counts.csv")["count"].sum()
    base = pd.read_csv(RunDir(runs["grade_spinal"]).fold_dir(0) / "train_counts.csv")["count"].sum()
    assert shown == base - 2


def test_cross_view_points_lie_in_the_axial_stack_that_contains_them(fake):
    group = GRADE_GROUPS["spinal_axial"]
    points = points_for_group(fake, fake.labels, group)
    spinal = fake.labels[fake.labels["condition"] == CONDITIONS[0]]
    assert len(points) == len(spinal) and set(points["condition"]) == {CONDITIONS[0]}
    for row in points.itertuples():
        series = fake.study(row.study_id).series[row.series_id]
        assert series.role == "Axial T2"
        projection = series.stacks[row.stack].project(np.array([row.world_x, row.world_y, row.world_z]))
        assert projection.inside
    # same world points as the sagittal labels: only the stack changed
    key = ["study_id", "level"]
    merged = points.merge(spinal, on=key, suffixes=("", "_sag"))
    np.testing.assert_array_equal(merged[["world_x", "world_y", "world_z"]].to_numpy(),
                                  merged[["world_x_sag", "world_y_sag", "world_z_sag"]].to_numpy())
    # a point no axial stack contains is left out
    far = spinal.assign(world_z=spinal["world_z"] + 500.0)
    assert points_for_group(fake, far, group).empty


@pytest.mark.slow
def test_cross_view_grader_trains_and_classify_averages_it_with_the_sagittal_one(runs, fake, tmp_path):
    axial = train(config_from_dict(tiny_grader_config("grade_spinal_axial")), fake, tmp_path / "axial", progress=False).path
    val_ids = sorted(RunDir(axial).folds().query("fold == 0")["study_id"].astype(str))
    both, warnings = classify(fake, fake.labels, [runs["grade_spinal"], axial], study_ids=val_ids, progress=False)
    alone, _ = classify(fake, fake.labels, [runs["grade_spinal"]], study_ids=val_ids, progress=False)
    axial_only, _ = classify(fake, fake.labels, [axial], study_ids=val_ids, progress=False)
    assert not any("spinal_axial" in w for w in warnings)
    spinal_rows = both["row_id"].str.contains("spinal")
    columns = ["normal_mild", "moderate", "severe"]
    mean = (alone.loc[spinal_rows, columns].to_numpy() + axial_only.loc[spinal_rows, columns].to_numpy()) / 2
    np.testing.assert_allclose(both.loc[spinal_rows, columns].to_numpy(), mean / mean.sum(1, keepdims=True),
                               atol=1e-6)


@pytest.mark.slow
def test_master_with_the_axial_view_starts_from_the_mean_of_both_spinal_views(runs, fake, tmp_path):
    axial = train(config_from_dict(tiny_grader_config("grade_spinal_axial")), fake, tmp_path / "axial", progress=False).path
    config = master_config(runs, epochs=1)
    config["model"]["spinal_axial_run"] = str(axial)
    task = get_task("grade_master")(config_from_dict(config))
    study_ids = sorted(RunDir(axial).folds().query("fold != 0")["study_id"].astype(str))
    data = task.build_dataset(fake, fake, study_ids, train=True)  # fold 0's training studies: fold 0's graders
    network = task.build_network().eval()  # the correction starts at zero
    item = data[0]
    assert item["image_spinal_axial"].shape[:2] == (5, 1) and item["present_spinal_axial"].all()
    batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        logits = network(batch)[0]
        sagittal = grid_outputs(network.graders["spinal"], batch["image_spinal"])[1][0, :, 0]
        axial_view = grid_outputs(network.graders["spinal_axial"], batch["image_spinal_axial"])[1][0, :, 0]
        foraminal = grid_outputs(network.graders["foraminal"], batch["image_foraminal"])[1][0]
    torch.testing.assert_close(logits[:, 0], (sagittal + axial_view) / 2)
    torch.testing.assert_close(logits[:, 1:3], foraminal)
    run = train(config_from_dict(config), fake, tmp_path / "master_axial", progress=False)
    submission, _ = classify(fake, fake.labels, [run.path], progress=False)
    assert len(submission) == 25 * len(fake.study_ids)


def test_grader_configs_refuse_impossible_oversampling():
    for bad in ([1, 0, 2], [1, 2], [1, 1.5, 2]):
        config = tiny_grader_config("grade_spinal")
        config["data"]["oversample"] = bad
        with pytest.raises(ConfigError, match="data.oversample"):
            get_task("grade_spinal")(config_from_dict(config))
