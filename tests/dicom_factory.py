"""Synthetic DICOM for the reader tests, written with pydicom (valid part-10 files, no real patient).

Every CT holds a bright anti-aliased sphere at a known LPS position: each pixel's value is computed
from its own LPS position (ImagePositionPatient + column · column spacing · row cosine + row · row
spacing · column cosine), so whatever the orientation, slice order or tilt, a reader that gets the
geometry right finds the sphere where it was put.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

BACKGROUND_HU = -1000.0
SPHERE_HU = 1000.0


@dataclass
class CTSpec:
    """What to write. Lengths in mm, positions in LPS mm.

    ``pixel_spacing`` is in DICOM order (row spacing, column spacing). Slice k's ImagePositionPatient is
    ``origin + along[k] · normal + along[k] · tan(tilt) · column cosine`` (a gantry tilt shears the
    stack along the column direction), with ``along`` defaulting to ``k · step``.
    """

    n_slices: int = 12
    rows: int = 20
    columns: int = 24
    pixel_spacing: tuple[float, float] = (0.9, 0.8)
    step: float = 2.0
    along: tuple[float, ...] | None = None
    row_cosine: tuple[float, float, float] = (1.0, 0.0, 0.0)
    col_cosine: tuple[float, float, float] = (0.0, 1.0, 0.0)
    origin: tuple[float, float, float] = (-10.0, -8.0, 20.0)
    tilt_deg: float = 0.0
    sphere_center: tuple[float, float, float] | None = None
    """LPS mm; default: off-centre inside the data (index (0.6 I, 0.4 J, 0.55 K) of the middle slice)"""
    sphere_radius: float = 3.0
    slope: float = 1.0
    intercept: float = -1024.0
    signed: bool = False
    transfer_syntax: str = ExplicitVRLittleEndian
    order: str = "ascending"
    """file names (and InstanceNumber) in "ascending", "descending" or "shuffled" slice order"""
    suffix: str = ".dcm"
    prefix: str = "slice"
    patient_position: str = "HFS"
    description: str = "synthetic CT"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    modality: str = "CT"
    sop_class_uid: str = CTImageStorage
    series_uid: str = field(default_factory=generate_uid)
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    seed: int = 0

    # ---- derived geometry (as the files will store it, i.e. after DS formatting) -----------------
    @property
    def row(self) -> np.ndarray:
        return np.array([float(_ds(v)) for v in self.row_cosine])

    @property
    def col(self) -> np.ndarray:
        return np.array([float(_ds(v)) for v in self.col_cosine])

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    @property
    def along_mm(self) -> np.ndarray:
        if self.along is not None:
            return np.asarray(self.along, dtype=float)
        return self.step * np.arange(self.n_slices)

    def positions(self) -> np.ndarray:
        """(K, 3) ImagePositionPatient of each slice in slice order, LPS mm (rounded as DS stores it)."""
        a = self.along_mm[:, None]
        p = np.asarray(self.origin) + a * self.normal + a * np.tan(np.radians(self.tilt_deg)) * self.col
        return np.vectorize(lambda v: float(_ds(v)))(p)

    def center(self) -> np.ndarray:
        if self.sphere_center is not None:
            return np.asarray(self.sphere_center, dtype=float)
        rs, cs = self.pixel_spacing
        along = self.along_mm
        mid = along[0] + 0.55 * (along[-1] - along[0])
        # follow the shear of a tilted stack so that the sphere stays inside the slices' data
        return (
            np.asarray(self.origin)
            + 0.6 * (self.columns - 1) * cs * self.row
            + (0.4 * (self.rows - 1) * rs + mid * np.tan(np.radians(self.tilt_deg))) * self.col
            + mid * self.normal
        )

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Expected Volume spacing (i, j, k): column spacing, row spacing, slice step."""
        return (self.pixel_spacing[1], self.pixel_spacing[0], self.step)

    @property
    def direction(self) -> np.ndarray:
        """Expected Volume direction: columns row cosine, column cosine, normal."""
        return np.column_stack([self.row, self.col, self.normal])


@dataclass
class SyntheticSeries:
    """What was written: files in slice order (k), expected HU (K, J, I) and the sphere centre (LPS mm)."""

    spec: CTSpec
    paths: list[Path]
    hu: np.ndarray
    positions: np.ndarray
    sphere_center: np.ndarray
    sop_uids: list[str]


def render_hu(spec: CTSpec) -> np.ndarray:
    """HU of every pixel, (K, J, I) float64, quantised exactly as the stored integers will give it back."""
    rs, cs = spec.pixel_spacing
    jj, ii = np.meshgrid(np.arange(spec.rows), np.arange(spec.columns), indexing="ij")
    center = spec.center()
    out = np.empty((spec.n_slices, spec.rows, spec.columns))
    for k, pos in enumerate(spec.positions()):
        lps = pos + ii[..., None] * cs * spec.row + jj[..., None] * rs * spec.col
        dist = np.linalg.norm(lps - center, axis=-1)
        inside = np.clip(spec.sphere_radius - dist + 0.5, 0.0, 1.0)  # anti-aliased edge, one voxel wide
        out[k] = BACKGROUND_HU + (SPHERE_HU - BACKGROUND_HU) * inside
    stored = _stored(spec, out)
    return stored * spec.slope + spec.intercept


def _stored(spec: CTSpec, hu: np.ndarray) -> np.ndarray:
    stored = np.round((hu - spec.intercept) / spec.slope)
    dtype = np.int16 if spec.signed else np.uint16
    info = np.iinfo(dtype)
    return np.clip(stored, info.min, info.max).astype(dtype)


def write_ct_series(folder: str | Path, spec: CTSpec | None = None) -> SyntheticSeries:
    """Write one single-frame CT series (one file per slice) into ``folder``."""
    spec = spec or CTSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hu = render_hu(spec)
    stored = _stored(spec, hu)
    positions = spec.positions()
    n = spec.n_slices
    names = list(range(n))
    if spec.order == "descending":
        names = names[::-1]
    elif spec.order == "shuffled":
        random.Random(spec.seed).shuffle(names)
    paths, uids = [], []
    for k in range(n):
        ds = _image_dataset(spec, spec.sop_class_uid)
        ds.InstanceNumber = names[k] + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*spec.row_cosine, *spec.col_cosine)]
        ds.SliceLocation = _ds(float(positions[k] @ spec.normal))
        _set_pixels(ds, stored[k], spec)
        path = folder / f"{spec.prefix}{names[k]:04d}{spec.suffix}"
        _save(ds, path)
        paths.append(path)
        uids.append(ds.SOPInstanceUID)
    return SyntheticSeries(spec, paths, hu, positions, spec.center(), uids)


def write_enhanced_ct(
    path: str | Path, spec: CTSpec | None = None, *, frame_order: list[int] | None = None
) -> SyntheticSeries:
    """Write the same content as `write_ct_series` as one Enhanced CT Image Storage (multi-frame) file.

    ``frame_order`` lists the slice index stored in each frame (default: shuffled, to test sorting).
    """
    spec = spec or CTSpec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hu = render_hu(spec)
    stored = _stored(spec, hu)
    positions = spec.positions()
    n = spec.n_slices
    if frame_order is None:
        frame_order = list(range(n))
        random.Random(spec.seed + 1).shuffle(frame_order)
    ds = _image_dataset(spec, EnhancedCTImageStorage, enhanced=True)
    ds.NumberOfFrames = n
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(v) for v in spec.pixel_spacing]
    measures.SliceThickness = _ds(spec.step)
    shared.PixelMeasuresSequence = Sequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [_ds(v) for v in (*spec.row_cosine, *spec.col_cosine)]
    shared.PlaneOrientationSequence = Sequence([orient])
    transform = Dataset()
    transform.RescaleSlope = _ds(spec.slope)
    transform.RescaleIntercept = _ds(spec.intercept)
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    recon = Dataset()
    recon.ConvolutionKernel = "B30f"
    shared.CTReconstructionSequence = Sequence([recon])
    xray = Dataset()
    xray.KVP = _ds(120)
    shared.CTXRayDetailsSequence = Sequence([xray])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in frame_order:
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [_ds(v) for v in positions[k]]
        item.PlanePositionSequence = Sequence([plane])
        content = Dataset()
        content.DimensionIndexValues = [k + 1]
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    _set_pixels(ds, np.ascontiguousarray(stored[frame_order]), spec)
    _save(ds, path)
    return SyntheticSeries(spec, [path], hu, positions, spec.center(), [ds.SOPInstanceUID])


def write_mr_series(folder: str | Path, n_slices: int = 12) -> list[Path]:
    """An axial MR series (MR Image Storage) with the same layout as the default CT."""
    spec = CTSpec(
        n_slices=n_slices,
        modality="MR",
        sop_class_uid=MRImageStorage,
        description="synthetic MR",
        intercept=0.0,
        prefix="mr",
    )
    return write_ct_series(folder, spec).paths


def write_non_image(
    path: str | Path, modality: str, sop_class_uid: str, *, study_uid: str | None = None
) -> Path:
    """A header-only DICOM object (SEG, RTSTRUCT, SR ...): enough for series discovery to classify it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.SeriesDescription = f"synthetic {modality}"
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYNTH"
    _save(ds, path)
    return path


def write_dicomdir(folder: str | Path) -> Path:
    """A minimal DICOMDIR index file (Media Storage Directory Storage, no records)."""
    path = Path(folder) / "DICOMDIR"
    ds = Dataset()
    ds.SOPClassUID = MediaStorageDirectoryStorage
    ds.SOPInstanceUID = generate_uid()
    ds.FileSetID = "SYNTH"
    ds.DirectoryRecordSequence = Sequence([])
    _save(ds, path)
    return path


# ---- internals ---------------------------------------------------------------------------------------------
def _ds(value: float) -> DSfloat:
    return DSfloat(float(value), auto_format=True)


def _image_dataset(spec: CTSpec, sop_class: str, *, enhanced: bool = False) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = spec.frame_of_reference_uid
    ds.Modality = spec.modality
    ds.ImageType = list(spec.image_type)
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYNTH"
    ds.StudyDate = "20240101"
    ds.SeriesNumber = 1
    ds.SeriesDescription = spec.description
    ds.Manufacturer = "SpineNav tests"
    ds.ManufacturerModelName = "dicom_factory"
    ds.PatientPosition = spec.patient_position
    if not enhanced:
        ds.KVP = _ds(120)
        ds.ConvolutionKernel = ["B30f", "3"]
        ds.SliceThickness = _ds(spec.step)
        ds.PixelSpacing = [_ds(v) for v in spec.pixel_spacing]
        ds.RescaleSlope = _ds(spec.slope)
        ds.RescaleIntercept = _ds(spec.intercept)
        ds.RescaleType = "HU"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if spec.signed else 0
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, spec: CTSpec) -> None:
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds.file_meta = _meta(ds, ExplicitVRLittleEndian)
    if UID(spec.transfer_syntax) != ExplicitVRLittleEndian:
        ds.compress(spec.transfer_syntax, np.ascontiguousarray(stored))


def _meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def _save(ds: Dataset, path: Path) -> None:
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        ds.file_meta = _meta(ds, ExplicitVRLittleEndian)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
