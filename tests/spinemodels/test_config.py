"""Config validation, overrides and the task registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from spinemodels.catalog import config_from_dict, get_task, load_config, task_names
from spinemodels.config import packaged_config, packaged_config_names, parse_override, save_config
from spinemodels.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "spinemodels" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert config.task in task_names()


def test_packaged_configs_are_named_pkg_name():
    names = packaged_config_names()
    assert len(names) == len(list(CONFIGS.rglob("*.yaml"))) and {"keypoints", "cpu/keypoints"} <= set(names)
    assert packaged_config("pkg:cpu/keypoints") == packaged_config("cpu/keypoints.yaml") == CONFIGS / "cpu/keypoints.yaml"
    assert load_config("pkg:cpu/keypoints").task == "keypoints"
    with pytest.raises(ConfigError, match=r"no packaged config 'cpu/keypoint'; packaged configs: .*pkg:cpu/keypoints"):
        load_config("pkg:cpu/keypoint")
    with pytest.raises(ConfigError, match=r"config file nope.yaml not found; a packaged config is named pkg:NAME: pkg:cpu/fine_keypoints, "):
        load_config("nope.yaml")


def test_reference_settings_match_the_seed_solution():
    finder = load_config(CONFIGS / "slice_finder.yaml")
    assert (finder.model.backbone, finder.data.image_size, finder.data.n_slices) == ("tf_efficientnetv2_b2", 512, 30)
    keypoints = load_config(CONFIGS / "keypoints.yaml")
    assert (keypoints.model.encoder, keypoints.data.channels, keypoints.data.image_size) == ("efficientnet-b2", 15, 512)


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key optim\.learning_rate; valid keys of optim: name, lr"):
        config_from_dict({"task": "slice_finder", "optim": {"learning_rate": 1e-3}})


def test_unknown_section_and_task():
    with pytest.raises(ConfigError, match="unknown key optimiser; valid top-level keys: task, model"):
        config_from_dict({"task": "slice_finder", "optimiser": {}})
    with pytest.raises(ConfigError, match="unknown task 'slicer'; valid tasks: .*keypoints.*slice_finder"):
        config_from_dict({"task": "slicer"})


@pytest.mark.parametrize("section, value, message", [
    ({"train": {"epochs": "ten"}}, None, r"train\.epochs: expected an integer, got 'ten'"),
    ({"train": {"amp": 1}}, None, r"train\.amp: expected true or false, got 1"),
    ({"optim": {"schedule": "linear"}}, None, r"optim\.schedule: expected one of \['step', 'cosine', 'constant'\]"),
    ({"optim": {"milestones": 4}}, None, r"optim\.milestones: expected a list of int"),
    ({"model": {"decoder_channels": [8, "x"]}}, None, r"model\.decoder_channels\[1\]: expected an integer"),
])
def test_wrong_values_are_explained(section, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"task": "keypoints", **section})


def test_overrides_are_typed_and_validated():
    config = config_from_dict({"task": "keypoints"}, ["optim.lr=3e-4", "train.epochs=2", "model.pretrained=false",
                                                       "optim.milestones=[1, 2]"])
    assert config.optim.lr == pytest.approx(3e-4) and isinstance(config.optim.lr, float)
    assert config.train.epochs == 2 and config.model.pretrained is False
    assert config.optim.milestones == [1, 2]
    with pytest.raises(ConfigError, match=r"unknown key train\.epoch; valid keys of train: epochs"):
        config_from_dict({"task": "keypoints"}, ["train.epoch=2"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.epochs")


def test_save_and_load_round_trip(tmp_path):
    config = config_from_dict({"task": "slice_finder", "data": {"n_slices": 12}}, ["optim.lr=0.002"])
    save_config(config, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == config.to_dict()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_registry_knows_the_stage_one_tasks():
    assert get_task("slice_finder").name == "slice_finder"
    assert get_task("keypoints").data_config.__name__ == "KeypointDataConfig"


def test_yaml_is_read_with_an_alias_and_size_limit(tmp_path):
    from spinemodels.config import MAX_YAML_ALIASES, MAX_YAML_BYTES, load_yaml, read_yaml_file

    assert load_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # a few aliases are fine
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_ALIASES} YAML aliases"):
        load_yaml(bomb)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match=f"big.yaml: larger than {MAX_YAML_BYTES} bytes"):
        read_yaml_file(big)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['true']")  # safe tags only
