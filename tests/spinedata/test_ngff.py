"""OME-Zarr (NGFF 0.5): every stack of an ingested store opens in ome-zarr-py (napari's reader) with its
pixels and spacings, the metadata validate as NGFF 0.5, and ``spine ngff`` brings a store written without
them to exactly what a fresh ingest writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cli.app import app
from spinedata.errors import StoreError
from spinedata.geometry import StackGeometry
from spinedata.store import layout as L
from spinedata.store import ngff, open_dataset
from spinedata.store.migrate import add_ngff, stack_folders
from spinedata.store.writer import IngestLock
from tests.helpers.cli_helpers import cli_error

ome_zarr_io = pytest.importorskip("ome_zarr.io")
ome_zarr_reader = pytest.importorskip("ome_zarr.reader")
v05_image = pytest.importorskip("ome_zarr_models.v05.image")

runner = CliRunner()


@pytest.fixture(scope="module")
def store(synth_store):
    return synth_store


def all_stacks(root):
    dataset = open_dataset(root)
    return [stack for study in dataset for series in study.series.values() for stack in series.stacks]


def stack_metadata(root) -> dict[str, bytes]:
    """Store-relative folder -> the bytes of its ``zarr.json``, for every stack group."""
    out = {}
    for study_id in sorted(L.complete_study_ids(root)):
        for _series, _k, folder in stack_folders(root / L.STUDIES / study_id):
            out[str(folder.relative_to(root))] = (folder / "zarr.json").read_bytes()
    return out


def strip_ngff(root, *, fmt: int | None = None) -> None:
    """Make ``root`` look written by the previous version: stack groups without NGFF attributes (and, with
    ``fmt``, that spinedata format in the root attributes)."""
    for relative in stack_metadata(root):
        path = root / relative / "zarr.json"
        document = json.loads(path.read_text())
        document["attributes"] = {k: v for k, v in document["attributes"].items() if k not in ngff.NGFF_KEYS}
        path.write_bytes(json.dumps(document, allow_nan=False).encode())
    if fmt is not None:
        meta = root / "zarr.json"
        document = json.loads(meta.read_text())
        document["attributes"][L.FORMAT_KEY] = fmt
        meta.write_text(json.dumps(document))


def test_every_stack_opens_in_ome_zarr_with_its_pixels_and_spacings(store):
    stacks = all_stacks(store)
    assert len(stacks) >= 6
    for stack in stacks:
        nodes = list(ome_zarr_reader.Reader(ome_zarr_io.parse_url(str(store / stack.path)))())
        assert nodes, stack.path
        image = nodes[0]
        assert any(isinstance(spec, ome_zarr_reader.Multiscales) for spec in image.specs)
        assert len(image.data) == 1
        data = np.asarray(image.data[0])
        stored = zarr.open_array(str(store / stack.path / L.IMAGE), mode="r")
        assert data.shape == stack.shape and data.dtype == stored.dtype
        np.testing.assert_array_equal(data, stored[...])
        if "scale_factor" not in stored.attrs:
            np.testing.assert_array_equal(data, stack.read())
        assert [axis["name"] for axis in image.metadata["axes"]] == list(L.IMAGE_DIMS)
        assert {axis["unit"] for axis in image.metadata["axes"]} == {"millimeter"}
        scale, translation = image.metadata["coordinateTransformations"][0]
        np.testing.assert_array_equal(scale["scale"], [stack.slice_spacing, *stack.pixel_spacing])
        assert translation["type"] == "translation"


def test_scale_and_translation_place_voxels_in_the_stack_frame(store):
    """For a uniform, unsheared stack, voxel (k, i, j) sits at (n . p, c . p, r . p) mm, p its LPS centre."""
    for stack in all_stacks(store):
        if not ngff.stack_ngff_attrs(stack.attrs, "x")[ngff.EXTRA]["exact"]:
            continue
        dataset = json.loads((store / stack.path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
        scale, translation = (t[t["type"]] for t in dataset["datasets"][0]["coordinateTransformations"])
        rng = np.random.default_rng(0)
        ijk = rng.uniform(0, 1, (20, 3)) * (np.array(stack.shape) - 1)
        world = stack.voxel_to_world(ijk)
        iop = np.asarray(stack.attrs["orientation"])
        frame = np.stack([np.cross(iop[:3], iop[3:]), iop[3:], iop[:3]])
        # to 1e-3 mm (found: 2e-4): DICOM's decimal IOP/IPP leave r, c and the slice step a hair off
        # orthogonal (far within the 1e-3 sine the shear flag allows)
        np.testing.assert_allclose(ijk * scale + translation, world @ frame.T, atol=1e-3)


def test_metadata_validate_as_ngff_05_and_keep_the_full_affine(store):
    for stack in all_stacks(store):
        group = zarr.open_group(str(store / stack.path), mode="r")
        image = v05_image.Image.from_zarr(group)  # ome-zarr-models: the NGFF 0.5 schema as pydantic models
        assert image.ome_attributes.multiscales[0].datasets[0].path == L.IMAGE
        attrs = dict(group.attrs)
        assert attrs["ome"]["version"] == "0.5"
        (multiscale,) = attrs["ome"]["multiscales"]
        assert {"axes", "datasets"} <= set(multiscale) and multiscale["name"] == stack.path.split("/", 1)[1]
        extra = attrs[ngff.EXTRA]
        (affine,) = extra["coordinateTransformations"]
        assert (affine["type"], affine["input"], affine["output"]) == ("affine", "image", "LPS")
        np.testing.assert_array_equal(affine["affine"], np.asarray(stack.attrs["affine"])[:3])
        # the image array keeps the plain geometry attributes, without NGFF
        assert not set(ngff.NGFF_KEYS) & set(zarr.open_array(str(store / stack.path / L.IMAGE)).attrs)


def irregular_geometry() -> StackGeometry:
    iop = np.array([0, 1, 0, 0, 0, -1], np.float64)
    positions = np.array([[x, -100, 50] for x in (0, 4, 8, 16, 20)], np.float64)  # one slice missing
    return StackGeometry.from_positions(iop, (0.5, 0.6), positions, np.arange(1, 6), (64, 48))


def test_irregular_stacks_still_get_an_image_and_a_warning():
    geometry = irregular_geometry()
    assert {"nonuniform", "missing_slices"} <= set(geometry.flags)
    attrs = ngff.stack_ngff_attrs(json.loads(json.dumps(geometry.to_attrs())), "1/2/0")
    extra = attrs[ngff.EXTRA]
    assert extra["exact"] is False and "nonuniform, missing_slices" in extra["warning"]
    v05_image.ImageAttrs.model_validate(attrs["ome"])  # still valid NGFF 0.5
    scale = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [geometry.slice_spacing, 0.5, 0.6]


@pytest.mark.parametrize("fmt", [None, 1])
def test_migration_gives_what_a_fresh_ingest_writes(store, tmp_path, fmt):
    old = tmp_path / "old.zarr"
    shutil.copytree(store, old)
    strip_ngff(old, fmt=fmt)
    before = open_dataset(old)  # the previous version's store still opens and reads as before
    stack = all_stacks(old)[0]
    np.testing.assert_array_equal(stack.read(), all_stacks(store)[0].read())
    assert before.format == (fmt or L.FORMAT_VERSION)

    report = add_ngff(old)
    assert report.stacks == report.written == len(stack_metadata(store))
    assert stack_metadata(old) == stack_metadata(store)  # byte for byte
    assert add_ngff(old).written == 0  # idempotent
    assert stack_metadata(old) == stack_metadata(store)
    assert not [p for p in old.rglob(".zarr.json.*")]


def test_spine_ngff_command_and_its_refusal_of_a_locked_store(store, tmp_path, monkeypatch, capsys):
    old = tmp_path / "old.zarr"
    shutil.copytree(store, old)
    strip_ngff(old)
    with IngestLock(old):
        with pytest.raises(StoreError, match="another ingest"):
            add_ngff(old)
        message = cli_error(monkeypatch, capsys, ["ngff", str(old)])
        assert message.startswith("error: another ingest")
    result = runner.invoke(app, ["ngff", str(old)])
    assert result.exit_code == 0, result.output
    n = len(stack_metadata(store))
    assert f"{n} stacks; NGFF metadata written to {n}" in result.output
    assert stack_metadata(old) == stack_metadata(store)
    result = runner.invoke(app, ["ngff", str(old)])
    assert f"written to 0, {n} already had it" in result.output
    message = cli_error(monkeypatch, capsys, ["ngff", str(tmp_path / "nothing.zarr")])
    assert message.startswith("error: no Zarr store")
