"""DICOM-SEG of the vertebra labels, referencing the source CT series (DESIGN §5).

One BINARY segment per vertebra (label = its name, category "Anatomical Structure", type the
SNOMED CT code of that vertebra), on the source series' own frames, in its Frame of Reference,
so a robot or PACS places it exactly on the CT it registers against.

Byte-identical re-runs: the new UIDs are derived from the inputs (`pydicom.uid.generate_uid`
with entropy sources), the content/series/instance-creation dates are the source study date at
00:00 (no clock), and the random dimension-organisation UID highdicom makes is replaced.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, registry
from ..volume import Volume

SEG_SERIES_NUMBER = 901
FALLBACK_DATE = "19700101"
POSITION_TOLERANCE_MM = 0.05
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def dicom_seg_blocker(labels: Volume, ct: Volume) -> str | None:
    """Why no DICOM-SEG can be written for this CT (one line), or None when it can."""
    files = ct.metadata.get("dicom_files") or []
    if not files:
        if ct.metadata.get("source_format") == "dicom":
            return "the CT grid was resampled while reading (tilted or uneven slices), so it has no source frames"
        return "the CT did not come from DICOM"
    if len(files) != labels.array.shape[0]:
        return f"the CT grid has {labels.array.shape[0]} slices but {len(files)} source files"
    if not labels.array.any():
        return "the label map holds no vertebra"
    return None


def write_dicom_seg(
    path: Path,
    labels: Volume,
    ct: Volume,
    *,
    models: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
) -> None:
    """Write ``labels`` (VerSe ids on ``ct``'s grid) as a DICOM-SEG referencing the CT's files.

    Parameters
    ----------
    path : Path
        Output file.
    labels : Volume
        uint8 VerSe ids, array (K, J, I) on the CT grid: slice k is source file k.
    ct : Volume
        The CT; ``metadata["dicom_files"]`` lists its source files in k order.
    models : list of dict, optional
        Models that produced the labels (name, version): the segments are then AUTOMATIC with
        that algorithm; without models the map came from elsewhere and is recorded as MANUAL.
    warnings : list, optional
        One-line notes are appended (e.g. UIDs the source lacked and that were derived).

    Raises
    ------
    ValueError
        When the source files do not match the CT grid (callers check `dicom_seg_blocker` first).
    """
    import highdicom as hd  # heavy import, only when a DICOM-SEG is written
    import pydicom
    from pydicom.sr.codedict import codes

    notes = warnings if warnings is not None else []
    files = [Path(f) for f in ct.metadata["dicom_files"]]
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    _check_geometry(sources, ct)
    label_digest = hashlib.sha256(np.ascontiguousarray(labels.array).tobytes()).hexdigest()
    _fill_missing_uids(sources, ct, notes)

    present = registry.sort_ids(int(i) for i in np.unique(labels.array) if i != 0)
    segment_of = np.zeros(256, dtype=np.uint8)
    for number, vid in enumerate(present, start=1):
        segment_of[vid] = number
    pixels = segment_of[labels.array]  # (frames, rows, columns) of segment numbers

    if models:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        first = models[0]
        algorithm = hd.AlgorithmIdentificationSequence(
            name=str(first.get("name", "spinenav"))[:64],
            version=str(first.get("version", __version__))[:64],
            family=codes.cid7162.ArtificialIntelligence,
        )
    else:
        algorithm_type, algorithm = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=registry.name_of(vid),
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=_vertebra_code(vid),
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm,
            tracking_uid=_uid("segment", sources[0].SeriesInstanceUID, registry.name_of(vid), label_digest),
            tracking_id=f"vertebra {registry.name_of(vid)}",
            display_color=hd.color.CIELabColor(*_lab(registry.by_id(vid).color)),
        )
        for number, vid in enumerate(present, start=1)
    ]
    date = str(getattr(sources[0], "StudyDate", "") or getattr(sources[0], "SeriesDate", "") or FALLBACK_DATE)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_uid("series", sources[0].SeriesInstanceUID, label_digest),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=_uid("instance", sources[0].SeriesInstanceUID, label_digest),
        instance_number=1,
        manufacturer="SpineNav",
        manufacturer_model_name="spinenav",
        software_versions=__version__,
        device_serial_number="0",
        content_description="Vertebrae (VerSe numbering), one segment per vertebra",
        content_label="VERTEBRAE",
        series_description="SpineNav vertebrae",
        content_date=date,
        content_time="000000",
        series_date=date,
        series_time="000000",
        omit_empty_frames=True,
    )
    _freeze(seg, date, _uid("dimension", sources[0].SeriesInstanceUID, label_digest))
    seg.save_as(path, enforce_file_format=True)


def _vertebra_code(vid: int):
    """SNOMED CT code of one vertebra (pydicom's DICOM code dictionary)."""
    from pydicom.sr.codedict import codes

    name = registry.name_of(vid)
    if name == "S1":
        return codes.SCT.Sacrum  # the VerSe "sacrum/S1" label covers the sacrum
    try:
        return getattr(codes.SCT, f"{name}Vertebra")  # C1…C7, T1…T12, L1…L5
    except AttributeError:
        return codes.SCT.Vertebra  # T13, L6: transitional vertebrae have no code of their own


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["spinenav-dicom-seg", __version__, *map(str, parts)]))


def _check_geometry(sources: list, ct: Volume) -> None:
    """Each source frame k must sit where the CT grid puts slice k (else the SEG would be wrong)."""
    expected = ct.index_to_lps(np.array([[0.0, 0.0, float(k)] for k in range(len(sources))]))
    for k, ds in enumerate(sources):
        position = np.array([float(v) for v in getattr(ds, "ImagePositionPatient", [np.nan] * 3)])
        if not np.all(np.abs(position - expected[k]) <= POSITION_TOLERANCE_MM):
            raise ValueError(f"source file {k} is not slice {k} of the CT grid")
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        if not np.allclose(orientation, np.r_[ct.direction[:, 0], ct.direction[:, 1]], atol=1e-4):
            raise ValueError(f"source file {k} has another orientation than the CT grid")


def _fill_missing_uids(sources: list, ct: Volume, notes: list[str]) -> None:
    """Anonymised series sometimes lack study/series/instance UIDs, which a DICOM-SEG must
    reference; the instance UID and SOP class are taken from the file meta, the others derived
    from the frame of reference, and a note says so."""
    derived = []
    frame = str(getattr(sources[0], "FrameOfReferenceUID", "") or ct.metadata.get("frame_of_reference_uid") or "")
    for ds in sources:
        meta = getattr(ds, "file_meta", None)
        if (
            not getattr(ds, "SOPInstanceUID", "")
            and meta is not None
            and getattr(meta, "MediaStorageSOPInstanceUID", "")
        ):
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        if not getattr(ds, "SOPClassUID", "") and meta is not None and getattr(meta, "MediaStorageSOPClassUID", ""):
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
    for ds in sources:
        # Type 2 attributes the SEG copies from its source: present (maybe empty) in a valid
        # CT, but some exporters leave them out; empty is what the standard allows for unknown.
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if all(getattr(ds, keyword, "") for ds in sources):
            continue
        value = _uid("source", keyword, frame, str(sources[0].SOPInstanceUID))
        for ds in sources:
            if not getattr(ds, keyword, ""):
                setattr(ds, keyword, value)
        derived.append(keyword)
    if derived:
        notes.append(
            f"segmentation.dcm: the source series has no {', '.join(derived)}; derived ones were used, "
            "so match it to the CT by FrameOfReferenceUID and SOP instance UIDs"
        )


def _freeze(seg, date: str, dimension_uid: str) -> None:
    """Replace the clock-dependent and random values highdicom sets with fixed ones."""
    seg.InstanceCreationDate = date
    seg.InstanceCreationTime = "000000"
    for item in getattr(seg, "ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = f"{date}000000"
    random_uids = {str(item.DimensionOrganizationUID) for item in getattr(seg, "DimensionOrganizationSequence", [])}

    def fix(dataset, element) -> None:
        if element.keyword == "DimensionOrganizationUID" and str(element.value) in random_uids:
            element.value = dimension_uid

    seg.walk(fix)


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIE L*a*b* of an sRGB colour (0-255): the segment's recommended display colour, so a DICOM viewer shows
    each level in the colour the app and the figures use (`registry.Vertebra.color`)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, float).reshape(1, 1, 3) / 255.0)[0, 0]
    return float(np.clip(lab[0], 0, 100)), float(np.clip(lab[1], -128, 127)), float(np.clip(lab[2], -128, 127))
