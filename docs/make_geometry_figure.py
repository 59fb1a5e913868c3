"""Draw the geometry conventions (docs/images/geometry.png): a sagittal and an axial stack in patient space.

    .venv/bin/python docs/make_geometry_figure.py [--out docs/images/geometry.png]

Both stacks are built with :meth:`spinedata.geometry.StackGeometry.from_positions` from DICOM-like headers
(ImageOrientationPatient, PixelSpacing, one ImagePositionPatient per slice), exactly as ingest builds them;
every drawn point is ``geometry.voxel_to_world`` of a voxel index, and the arrows are the affine's columns:
``A[:3,0]`` one slice step, ``A[:3,1]`` one row step (``drow * c``), ``A[:3,2]`` one column step
(``dcol * r``), starting at ``A[:3,3]``, the first slice's IPP (the centre of voxel (0, 0, 0)). Axes are
DICOM LPS millimetres: +x towards the patient's left, +y posterior, +z head.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spinedata.geometry import StackGeometry  # noqa: E402

ARROW_SCALE = {0: 8.0, 1: 10.0, 2: 10.0}
"""Each affine column is drawn this many times longer than one step, so that it can be seen."""
COLUMN_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a")


def sagittal_stack() -> StackGeometry:
    """15 sagittal slices 4 mm apart, 64 x 64 pixels of 4 mm; n = r x c = -x, so slice 0 is the leftmost."""
    orientation = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # columns run posterior (+y), rows run to the feet (-z)
    positions = [(-28.0 + 4.0 * k, -128.0, 128.0) for k in range(15)]
    return StackGeometry.from_positions(orientation, (4.0, 4.0), positions, range(1, 16), (64, 64))


def axial_stack() -> StackGeometry:
    """5 axial slices (an angled slab through a disc), 4 mm apart, 24 x 24 pixels of 4 mm, tilted 15 degrees."""
    tilt = np.deg2rad(15.0)
    r = np.array([1.0, 0.0, 0.0])                               # columns run to the patient's left
    c = np.array([0.0, np.cos(tilt), -np.sin(tilt)])            # rows run posterior, tilted
    n = np.cross(r, c)                                          # slice normal, towards the head
    first = np.array([-46.0, -60.0, -40.0])
    positions = [first + 4.0 * k * n for k in range(5)]
    return StackGeometry.from_positions((*r, *c), (4.0, 4.0), positions, range(1, 6), (24, 24))


def _outline(geometry: StackGeometry, k: int) -> np.ndarray:
    """The four corners (pixel centres) of slice ``k`` in LPS mm, closed: ``(5, 3)``."""
    _, rows, cols = geometry.shape
    corners = [(k, 0, 0), (k, 0, cols - 1), (k, rows - 1, cols - 1), (k, rows - 1, 0), (k, 0, 0)]
    return geometry.voxel_to_world(np.array(corners, float))


def _draw_stack(ax, geometry: StackGeometry, name: str, colour: str, label_offset: tuple) -> None:
    n = geometry.shape[0]
    for k in range(n):
        xyz = _outline(geometry, k)
        ax.plot(xyz[:, 0], xyz[:, 1], xyz[:, 2], color=colour, linewidth=1.4 if k in (0, n - 1) else 0.4,
                alpha=0.9 if k in (0, n - 1) else 0.5)
    origin = geometry.affine[:3, 3]
    for j, label in enumerate(("A[:3,0] slice", "A[:3,1] row", "A[:3,2] col")):
        step = geometry.affine[:3, j] * ARROW_SCALE[j]
        ax.quiver(*origin, *step, color=COLUMN_COLOURS[j], linewidth=2.2, arrow_length_ratio=0.18)
        tip = origin + step * 1.12
        ax.text(*tip, f"{label} x{ARROW_SCALE[j]:g}", color=COLUMN_COLOURS[j], fontsize=8)
    ax.scatter(*origin, color="black", s=18)
    ax.text(*(origin + np.array(label_offset)), f"{name}: voxel (0,0,0) = IPP of slice 0", fontsize=8)


def draw(out: Path) -> Path:
    figure = plt.figure(figsize=(11.0, 8.0), dpi=110)
    ax = figure.add_subplot(projection="3d")
    _draw_stack(ax, sagittal_stack(), "sagittal", "#555555", (0.0, 0.0, 22.0))
    _draw_stack(ax, axial_stack(), "axial slab", "#984ea3", (0.0, 0.0, -22.0))
    ax.set_xlabel("x (mm): + = patient's Left")
    ax.set_ylabel("y (mm): + = Posterior")
    ax.set_zlabel("z (mm): + = Head (superior)")
    ax.set_xlim(-100, 100)
    ax.set_ylim(-140, 130)
    ax.set_zlim(-140, 140)
    ax.view_init(elev=20, azim=-50)
    ax.set_box_aspect((200, 270, 280))
    figure.suptitle("Stacks in DICOM LPS patient space: array (slice, row, col) -> A @ (slice, row, col, 1)\n"
                    "A[:3,0] = (IPP_last - IPP_first)/(N-1), A[:3,1] = drow * c (IOP[3:6]), "
                    "A[:3,2] = dcol * r (IOP[0:3]), A[:3,3] = IPP_first", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, bbox_inches="tight")
    plt.close(figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images" / "geometry.png")
    print(draw(parser.parse_args().out))


if __name__ == "__main__":
    main()
