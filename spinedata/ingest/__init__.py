"""``spine ingest`` as a library: DICOM folders (competition layout or plain) -> a spinedata store."""

from spinedata.ingest.discover import SeriesJob, StudyJob
from spinedata.ingest.paths import check_report_path
from spinedata.ingest.run import IngestResult, default_workers, ingest
from spinedata.ingest.worker import StudyResult, ingest_study

__all__ = [
    "IngestResult",
    "SeriesJob",
    "StudyJob",
    "StudyResult",
    "check_report_path",
    "default_workers",
    "ingest",
    "ingest_study",
]
