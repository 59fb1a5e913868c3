"""Reading DICOM files: headers only (fast, for grouping into stacks) and pixels (decoded, rescaled).

``read_header`` reads a file up to its pixel data and checks that it is a single-frame image with
geometry; anything else raises ``DicomReadError`` with a precise reason, which ``spine ingest`` turns into
a report line. ``read_headers`` gives one header per frame of a multi-frame file. ``read_pixels`` /
``read_stack`` / ``read_stack_stored`` decode the pixel data and apply RescaleSlope/RescaleIntercept.
Decisions: ``docs/geometry.md``; hostile input: ``docs/reliability.md``.

Modules, each one job:

- ``elements``: tags, VRs, transfer syntax UIDs, the element header parser, raw element values;
- ``fastscan``: the fast header scan (no pydicom) behind ``read_header``;
- ``dataset``: pydicom, the reference reader (opening a data set, its values, the pixel data element);
- ``values``: checked conversions of header values (numbers, text, vectors, the rescale);
- ``sliceheader``: ``SliceHeader`` and ``build_header``, where every reader's values are checked;
- ``headers``: ``read_header`` / ``read_headers``;
- ``multiframe``: one header per frame of a multi-frame file;
- ``limits``: ``ReadLimits``, regular-file checks, containment of decoder failures;
- ``rescale``: the rescale and dtype policy;
- ``pixels``: the pixel readers.
"""

from spinedata.dicom.elements import HEADER_ELEMENTS, HEADER_KEYWORDS, SCAN_TAGS
from spinedata.dicom.headers import read_header, read_headers
from spinedata.dicom.limits import DEFAULT_LIMITS, ReadLimits, check_regular_file, contained, failure_reason
from spinedata.dicom.pixels import read_pixels, read_stack, read_stack_stored
from spinedata.dicom.rescale import common_dtype, is_whole, shared_rescale
from spinedata.dicom.sliceheader import SliceHeader

__all__ = [
    "DEFAULT_LIMITS",
    "HEADER_ELEMENTS",
    "HEADER_KEYWORDS",
    "SCAN_TAGS",
    "ReadLimits",
    "SliceHeader",
    "check_regular_file",
    "common_dtype",
    "contained",
    "failure_reason",
    "is_whole",
    "read_header",
    "read_headers",
    "read_pixels",
    "read_stack",
    "read_stack_stored",
    "shared_rescale",
]
