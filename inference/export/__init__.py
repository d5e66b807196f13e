"""The robot bundle (DESIGN §5): per-vertebra STL meshes, centers, label map, DICOM-SEG, manifest.

`export_labels` builds it from a label map on disk (``spinenav export-labels``); `write_bundle`
from one in memory (the pipeline). Output is atomic and byte-identical for the same input
(except the ``created`` time in manifest.json; set ``SOURCE_DATE_EPOCH`` to fix it too).
"""

from .atomic import atomic_output_dir, check_output_dir
from .bundle import SCHEMA_VERSION, ExportResult, VertebraRecord, export_labels, write_bundle

__all__ = [
    "SCHEMA_VERSION",
    "ExportResult",
    "VertebraRecord",
    "atomic_output_dir",
    "check_output_dir",
    "export_labels",
    "write_bundle",
]
