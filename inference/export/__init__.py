"""The robot bundle (DESIGN §5): per-vertebra STL meshes, centers, label map, DICOM-SEG, manifest.

`write_bundle` writes a `inference.case.Case` (the pipeline's, or one built from a label map) and is
the one writer of every bundle; `export_labels` builds the case from a label map on disk first
(``spinenav export-labels``). Output is atomic and byte-identical for the same input
(except the ``created`` time in manifest.json; set ``SOURCE_DATE_EPOCH`` to fix it too).
"""

from .atomic import atomic_output_dir, check_output_dir
from .bundle import SCHEMA_VERSION, ExportResult, export_labels, read_labels_case, write_bundle

__all__ = [
    "SCHEMA_VERSION",
    "ExportResult",
    "atomic_output_dir",
    "check_output_dir",
    "export_labels",
    "read_labels_case",
    "write_bundle",
]
