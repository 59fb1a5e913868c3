"""Synthetic lumbar spine MRI studies in the competition's layout, with exact ground truth.

``generate(out_dir, n_studies, seed, n_test_studies=...)`` writes DICOM series rendered from a 3D
anatomical model (``anatomy``), whose severities (``disease``) change what a radiologist grades, acquired
like real protocols (``acquisition``, ``render``, ``dicomwrite``), plus the CSVs (``layout``).
"""

from spinedata.synth.competition import SynthResult, generate
from spinedata.synth.options import SynthOptions

__all__ = ["SynthOptions", "SynthResult", "generate"]
