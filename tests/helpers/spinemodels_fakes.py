"""A small in-memory dataset with the public API of ``spinedata.open_dataset`` (studies, series, stacks with
real ``StackGeometry``, labels with world coordinates, targets) for fast tests of spinemodels.

Each study has a Sagittal T2/STIR stack (bright blobs at the five spinal points, strongest on the midline
slice), a Sagittal T1 stack and an Axial T2 series of five 3-slice slabs, one per level. Patient space is
LPS mm; the spine runs along z, sagittal slices step along x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from spinedata.constants import CONDITIONS, LEVELS, ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2, TARGETS
from spinedata.geometry import StackGeometry

SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # columns go posterior, rows go foot; normal = -x
AX_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # columns go left, rows go posterior; normal = +z
FORAMINAL_X_MM = 14.0
SUBARTICULAR_X_MM = 8.0
SUBARTICULAR_Y_MM = 6.0


def _of_geometry(name: str) -> property:
    """A stack's attribute or method that is its geometry's, as ``spinedata``'s ``Stack`` has it."""
    return property(lambda self: getattr(self.geometry, name))


@dataclass
class FakeStack:
    geometry: StackGeometry
    pixels: np.ndarray

    shape = _of_geometry("shape")
    affine = _of_geometry("affine")
    instance_numbers = _of_geometry("instance_numbers")
    positions = _of_geometry("positions")
    flags = _of_geometry("flags")
    voxel_to_world = _of_geometry("voxel_to_world")
    world_to_voxel = _of_geometry("world_to_voxel")
    project = _of_geometry("project")

    def read(self, slices=None):
        return self.pixels if slices is None else self.pixels[slices]


@dataclass
class FakeSeries:
    series_id: str
    description: str
    role: str | None
    stacks: list[FakeStack]


@dataclass
class FakeStudy:
    study_id: str
    series: dict[str, FakeSeries]
    warnings: tuple[str, ...] = ()


@dataclass
class FakeDataset:
    studies: dict[str, FakeStudy]
    labels: pd.DataFrame
    targets: pd.DataFrame
    truth: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def study_ids(self) -> list[str]:
        return list(self.studies)

    def study(self, study_id) -> FakeStudy:
        return self.studies[str(study_id)]


def _blob(shape, centre_rc, sigma):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((rows - centre_rc[0]) ** 2 + (cols - centre_rc[1]) ** 2) / (2 * sigma**2))


def _sag_stack(rng, n, size, spacing, slice_mm, x_first, inst_first):
    positions = [(x_first - i * slice_mm, -spacing * size / 2, 80.0) for i in range(n)]
    geometry = StackGeometry.from_positions(SAG_IOP, (spacing, spacing), positions,
                                            np.arange(inst_first, inst_first + n), (size, size))
    return geometry


def make_study(study_id: str, rng: np.random.Generator, size: int = 64, n_sag: int = 12):
    """One study and its label rows (world points exact, on slice centres for spinal points)."""
    spacing = float(rng.uniform(0.9, 1.2))
    slice_mm = 3.5
    midline = int(rng.integers(4, n_sag - 4))
    t2 = _sag_stack(rng, n_sag, size, spacing, slice_mm, x_first=midline * slice_mm, inst_first=1)
    col = float(rng.uniform(0.4, 0.6) * size)
    first_row = float(rng.uniform(0.15, 0.25) * size)
    step = float(rng.uniform(0.13, 0.16) * size)
    spinal_rc = [(first_row + i * step + rng.uniform(-0.5, 0.5), col + rng.uniform(-2, 2)) for i in range(5)]
    spinal_world = [t2.voxel_to_world([midline, r, c]) for r, c in spinal_rc]
    image = rng.normal(0.1, 0.02, (n_sag, size, size))
    for s in range(n_sag):
        weight = np.exp(-((s - midline) ** 2) / 2.0)
        for i, (r, c) in enumerate(spinal_rc):
            image[s] += weight * (0.6 + 0.08 * i) * _blob((size, size), (r, c), 2.0)
        image[s] += weight * _blob((size, size), (spinal_rc[-1][0] + step * 0.7, col), 3.0)  # "sacrum"
    t2_stack = FakeStack(t2, (image * 1000).astype(np.int16))
    t1 = _sag_stack(rng, n_sag, size, spacing, slice_mm, x_first=(n_sag // 2) * slice_mm, inst_first=1)
    t1_stack = FakeStack(t1, (rng.normal(0.1, 0.02, (n_sag, size, size)) * 1000).astype(np.int16))
    slabs = []
    inst = 1
    for world in spinal_world:
        positions = [(-size * spacing / 2, world[1] - size * spacing / 2, world[2] + dz) for dz in (-4, 0, 4)]
        geometry = StackGeometry.from_positions(AX_IOP, (spacing, spacing), positions, np.arange(inst, inst + 3),
                                                (size, size))
        inst += 3
        slabs.append(FakeStack(geometry, (rng.normal(0.1, 0.02, (3, size, size)) * 1000).astype(np.int16)))
    series = {
        "1": FakeSeries("1", "Sagittal T2/STIR", ROLE_SAG_T2, [t2_stack]),
        "2": FakeSeries("2", "Sagittal T1", ROLE_SAG_T1, [t1_stack]),
        "3": FakeSeries("3", "Axial T2", ROLE_AXIAL_T2, slabs),
    }
    study = FakeStudy(study_id, series)
    rows, truth = [], []
    offsets = {
        CONDITIONS[0]: (0.0, 0.0, 0.0),
        CONDITIONS[1]: (FORAMINAL_X_MM, 0.0, 0.0),
        CONDITIONS[2]: (-FORAMINAL_X_MM, 0.0, 0.0),
        CONDITIONS[3]: (SUBARTICULAR_X_MM, SUBARTICULAR_Y_MM, 0.0),
        CONDITIONS[4]: (-SUBARTICULAR_X_MM, SUBARTICULAR_Y_MM, 0.0),
    }
    for condition, offset in offsets.items():
        series_id = {CONDITIONS[0]: "1", CONDITIONS[1]: "2", CONDITIONS[2]: "2"}.get(condition, "3")
        for level, world in zip(LEVELS, spinal_world, strict=True):
            point = world + np.asarray(offset) + (0 if condition == CONDITIONS[0] else rng.normal(0, 0.5, 3))
            truth.append({"study_id": study_id, "condition": condition, "level": level,
                          "world_x": point[0], "world_y": point[1], "world_z": point[2]})
            best = None
            for k, stack in enumerate(series[series_id].stacks):
                p = stack.project(point)
                if p.inside and (best is None or abs(p.distance_mm) < abs(best[1].distance_mm)):
                    best = (k, p)
            k, p = best
            stack = series[series_id].stacks[k]
            on_plane = stack.voxel_to_world([p.slice, p.row, p.col])
            rows.append({"study_id": study_id, "series_id": series_id,
                         "instance_number": int(stack.instance_numbers[p.slice]), "condition": condition,
                         "level": level, "x": p.col, "y": p.row, "stack": k, "slice": p.slice,
                         "world_x": on_plane[0], "world_y": on_plane[1], "world_z": on_plane[2]})
    return study, rows, truth


def make_fake_dataset(n_studies: int = 6, seed: int = 0, size: int = 64, n_sag: int = 12) -> FakeDataset:
    """``n_studies`` studies with ids "100", "101", ...; targets drawn at random (0/1/2)."""
    rng = np.random.default_rng(seed)
    studies, labels, truth, targets = {}, [], [], []
    for i in range(n_studies):
        study_id = str(100 + i)
        study, rows, points = make_study(study_id, rng, size, n_sag)
        studies[study_id] = study
        labels += rows
        truth += points
        targets.append({"study_id": study_id, **{t: int(rng.choice(3, p=[0.6, 0.25, 0.15])) for t in TARGETS}})
    return FakeDataset(studies, pd.DataFrame(labels), pd.DataFrame(targets), pd.DataFrame(truth))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and pytest -n 2 already uses both cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
