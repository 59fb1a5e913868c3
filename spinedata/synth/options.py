"""Settings of the synthetic study generator (one frozen dataclass, validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from spinedata.errors import OptionError
from spinedata.synth.disease import CLASS_BALANCES


@dataclass(frozen=True)
class SynthOptions:
    """How studies are drawn. Defaults follow real lumbar protocols at modest matrix sizes."""

    class_balance: str = "real"
    """``'real'``: class priors close to the competition's; ``'balanced'``: a third per grade."""
    off_by_one_fraction: float = 0.0
    """Share of training studies whose labelled points sit one disc level off (grades stay true)."""
    missing_series_fraction: float = 0.0
    """Share of studies that lack one of the three series types."""
    extra_series_fraction: float = 0.0
    """Share of studies with a second series of one type (labels are on the first)."""
    grade_noise_fraction: float = 0.0
    """Share of the training severities written to train.csv as another grade (synth_truth.csv keeps the truth)."""
    sagittal_matrices: tuple[int, ...] = (320, 384)
    """In-plane matrix sizes drawn for sagittal series (with the field of view: 0.68-1.0 mm pixels)."""
    axial_matrices: tuple[int, ...] = (256, 320)
    sagittal_fov_mm: tuple[float, float] = (260.0, 320.0)
    axial_fov_mm: tuple[float, float] = (160.0, 200.0)
    sagittal_slices: tuple[int, int] = (15, 20)
    """Range of the number of sagittal slices (at least enough to cover both foramina)."""
    slab_fraction: float = 0.6
    """Share of Axial T2 series acquired as one angled slab per disc (the rest: one contiguous stack)."""
    slab_slices: tuple[int, int] = (3, 6)
    non_square_fraction: float = 0.25
    """Share of series with a rectangular matrix or non-square pixels."""
    stir_fraction: float = 0.2
    """Share of ``Sagittal T2/STIR`` series that are STIR (fat suppressed)."""
    max_rotation_deg: float = 8.0
    """Largest patient rotation about any axis (the technologist's planes follow it, imperfectly)."""
    noise: float = 0.03
    """Noise standard deviation relative to the brightest tissue (CSF on T2)."""
    reverse_instance_fraction: float = 0.3
    """Share of series whose instance numbers run against slice position."""

    def __post_init__(self) -> None:
        if self.class_balance not in CLASS_BALANCES:
            raise OptionError(f"class_balance must be one of {CLASS_BALANCES}, got {self.class_balance!r}")
        for name in ("off_by_one_fraction", "missing_series_fraction", "extra_series_fraction",
                     "grade_noise_fraction", "slab_fraction",
                     "non_square_fraction", "stir_fraction", "reverse_instance_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise OptionError(f"{name} must lie in [0, 1], got {value}")
        for name in ("sagittal_matrices", "axial_matrices"):
            sizes = getattr(self, name)
            if not sizes or any(int(m) < 32 or int(m) > 1024 for m in sizes):
                raise OptionError(f"{name} must be matrix sizes between 32 and 1024, got {sizes}")
        for name in ("sagittal_fov_mm", "axial_fov_mm", "sagittal_slices", "slab_slices"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise OptionError(f"{name} must be a range (low, high) with 0 < low <= high, got {(low, high)}")
        if not 0.0 <= self.max_rotation_deg <= 30.0:
            raise OptionError(f"max_rotation_deg must lie in [0, 30], got {self.max_rotation_deg}")
        if self.noise < 0.0:
            raise OptionError(f"noise must be >= 0, got {self.noise}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


SMALL = {"sagittal_matrices": (128,), "axial_matrices": (96,), "sagittal_slices": (15, 16), "slab_slices": (3, 4)}
"""Overrides for tiny test datasets (coarse pixels, few slices)."""
