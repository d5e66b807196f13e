"""DICOM series discovery: find DICOM files, read their headers, group them into series, pick the CT.

Only headers are read here (``stop_before_pixels``); `inference.io.dicom` reads the pixels of the
chosen series. Every image frame's geometry is pulled out of its header into a `Frame` record, so
single-frame slices and the frames of an enhanced multi-frame CT go through the same code later.

Files that cannot be used (empty, not DICOM, damaged headers, DICOMDIR indexes) are skipped one by
one and counted, never fatal on their own: a folder copied from a PACS or a CD often holds such
files beside the images.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..errors import InputError
from ..progress import CancelToken, ProgressCallback, check_cancel, report

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
CT_SOP_CLASSES = frozenset(
    {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}
)
"""SOP classes read as CT: classic single-frame CT and the multi-frame (enhanced) CT objects."""

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""SOP class of a DICOMDIR index file (no image in it)."""

# reasons for skipping a file, as counted in messages
EMPTY, NOT_DICOM, DAMAGED, DICOMDIR = "empty (0 bytes)", "not DICOM", "damaged", "DICOMDIR index"
UNREADABLE = "unreadable (permission denied or I/O error)"

NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "DOC", "FID", "PLAN", "AU"}
)
"""Modalities of objects that are not image stacks: counted as files, not images, in messages."""


class HeaderProblem(Exception):
    """A CT header lacks what is needed to place its pixels in space (kept per file, raised later)."""


class UnusableFile(InputError):
    """A file that is not a readable DICOM object; ``reason`` is the short category used in counts."""

    def __init__(self, path: Path, reason: str, message: str):
        self.reason = reason
        super().__init__(path, message)


@dataclass(frozen=True)
class Frame:
    """Geometry and value scaling of one 2D image: a single-frame file or one frame of a multi-frame file.

    Attributes
    ----------
    path : Path
        The file holding the pixels.
    frame_index : int or None
        0-based frame number inside a multi-frame file; ``None`` for a single-frame file.
    sop_instance_uid : str
        SOPInstanceUID of the file ("" when the file has none).
    position : tuple of 3 float
        ImagePositionPatient: LPS mm of the centre of the first pixel (row 0, column 0).
    orientation : tuple of 6 float
        ImageOrientationPatient: LPS unit vector along a row (increasing column index), then along a
        column (increasing row index).
    pixel_spacing : tuple of 2 float
        DICOM PixelSpacing in DICOM order: (spacing between rows, spacing between columns), mm.
    rows, columns : int
        Image height and width in pixels.
    slope, intercept : float
        Modality rescale: value = stored * slope + intercept (HU for CT).
    """

    path: Path
    frame_index: int | None
    sop_instance_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slope: float
    intercept: float


@dataclass
class DicomFile:
    """What one DICOM file's header says (no pixel data). ``frames`` is filled for CT images only."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    series_description: str
    image_type: tuple[str, ...]
    n_frames: int
    series_number: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    problem: str | None = None

    @property
    def is_ct_image(self) -> bool:
        return self.sop_class_uid in CT_SOP_CLASSES

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    @property
    def is_enhanced(self) -> bool:
        """An enhanced (multi-frame) CT object: all its frames are in this one file."""
        return self.sop_class_uid in (ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE)

    @property
    def kind(self) -> str:
        """Short label used in messages: the modality, qualified when the object is not a CT image."""
        if self.is_ct_image:
            return "CT localizer" if self.is_localizer else "CT"
        if self.modality == "CT":
            # e.g. a screenshot saved as Secondary Capture with Modality CT: not a volume
            return f"CT {_sop_name(self.sop_class_uid)}"
        return self.modality or _sop_name(self.sop_class_uid)

    def group_key(self) -> str:
        """Series key: the SeriesInstanceUID, or a stand-in when an anonymiser blanked it."""
        if self.series_uid:
            # the kind splits localizers (and any non-CT object sharing the UID) off the CT slices
            return f"{self.series_uid}|{self.kind}"
        # Anonymised without a UID: whatever differs between two series of one study keeps them apart
        # (series number, kernel, orientation, image size and pixel spacing), never merged into one volume.
        geometry = ""
        if self.frames:
            fr = self.frames[0]
            geometry = (f"{[round(v, 3) for v in fr.orientation]}|{fr.rows}x{fr.columns}|"
                        f"{[round(v, 4) for v in fr.pixel_spacing]}")
        return (f"no-series-uid|{self.frame_of_reference_uid}|{self.path.parent}|{self.kind}|{self.series_number}|"
                f"{self.facts.get('kernel')}|{geometry}")


@dataclass
class Series:
    """Files sharing one SeriesInstanceUID and kind (localizer images split off into their own series)."""

    key: str
    files: list[DicomFile]

    @property
    def first(self) -> DicomFile:
        return self.files[0]

    @property
    def uid(self) -> str:
        return self.first.series_uid

    @property
    def kind(self) -> str:
        return self.first.kind

    @property
    def is_ct(self) -> bool:
        return all(f.is_ct_image and not f.is_localizer for f in self.files)

    @property
    def is_image(self) -> bool:
        return self.first.modality not in NON_IMAGE_MODALITIES

    @property
    def n_images(self) -> int:
        return sum(f.n_frames for f in self.files)

    @property
    def is_axial(self) -> bool:
        """True when the slice normal is closest to the patient's head-feet (z) axis."""
        frames = [fr for f in self.files for fr in f.frames]
        if not frames:
            return False
        o = frames[0].orientation
        n = _cross(o[:3], o[3:])
        return abs(n[2]) >= max(abs(n[0]), abs(n[1])) and abs(n[2]) > 0

    def summary(self) -> str:
        """One line: modality, count, description, UID (for ``metadata["other_series"]``)."""
        count = _plural(self.n_images, "image") if self.is_image else _plural(len(self.files), "file")
        desc = self.first.series_description or "no description"
        uid = self.uid or "no SeriesInstanceUID"
        return f"{self.kind}, {count}, '{desc}', {uid}"


@dataclass
class ScanResult:
    """DICOM files found under a folder, plus the files that were skipped and why."""

    root: Path
    files: list[DicomFile]
    skipped: dict[str, list[Path]]
    """reason ("empty (0 bytes)", "not DICOM", "damaged", "DICOMDIR index") → paths"""

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for k, v in self.skipped.items() if k != DICOMDIR)

    def skipped_note(self) -> str | None:
        """One-line warning about skipped files (DICOMDIR indexes are expected and not mentioned)."""
        if not self.n_skipped:
            return None
        parts = [f"{len(v)} {k}" for k, v in self.skipped.items() if v and k != DICOMDIR]
        example = next(p for k, v in self.skipped.items() if k != DICOMDIR for p in v)
        return (
            f"skipped {_plural(self.n_skipped, 'file')} that could not be used ({', '.join(parts)}; "
            f"e.g. {_rel(example, self.root)})"
        )

    def series(self) -> list[Series]:
        groups: dict[str, list[DicomFile]] = {}
        for f in self.files:
            groups.setdefault(f.group_key(), []).append(f)
        return [Series(k, v) for k, v in groups.items()]


# ---- reading headers ---------------------------------------------------------------------------------------
@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings about odd but readable files: the CLI's stderr stays one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def dcmread_any(path: Path, *, stop_before_pixels: bool) -> Dataset:
    """`pydicom.dcmread`, also accepting raw files without the 128-byte preamble and 'DICM'.

    Raises `InvalidDicomError` for files that are not DICOM.
    """
    with quiet_pydicom():
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            if not _starts_like_raw_dicom(path):
                raise
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)


def _starts_like_raw_dicom(path: Path) -> bool:
    # A preamble-less file begins with a little-endian group 0x0002 or 0x0008 tag; anything else
    # read with force=True would give a garbage dataset.
    with open(path, "rb") as fh:
        head = fh.read(4)
    return len(head) == 4 and head[:2] in (b"\x02\x00", b"\x08\x00")


def read_header(path: str | Path) -> DicomFile:
    """Read one file's DICOM header into a `DicomFile`.

    Raises `InputError` naming the file when it is empty, not DICOM, or its header is damaged.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise UnusableFile(path, UNREADABLE, f"cannot open the file ({exc.strerror}); check permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnusableFile(path, NOT_DICOM, "not a regular file (a pipe, socket or device); give a DICOM CT series")
    size = st.st_size
    if size == 0:
        raise UnusableFile(path, EMPTY, "the file is empty (0 bytes); copy the series again from the source")
    not_dicom = "not a DICOM file; give a DICOM CT series (folder or file)"
    damaged = "damaged DICOM header ({}); copy the file again from the source"
    try:
        ds = dcmread_any(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise UnusableFile(path, NOT_DICOM, not_dicom) from None
    except OSError as exc:
        raise UnusableFile(path, UNREADABLE, f"cannot be read ({exc.strerror or type(exc).__name__}); check "
                           "its permissions or copy it again") from None
    except Exception as exc:  # noqa: BLE001 - damaged files make pydicom raise all sorts of errors
        raise UnusableFile(path, DAMAGED, damaged.format(type(exc).__name__)) from None
    try:
        with quiet_pydicom():  # values are converted lazily, on first access: warnings come from here too
            return _describe(path, ds)
    except InvalidDicomError:
        raise UnusableFile(path, NOT_DICOM, not_dicom) from None
    except HeaderProblem as exc:
        raise UnusableFile(path, DAMAGED, damaged.format(_short(exc))) from None
    except Exception as exc:  # noqa: BLE001 - a bad value in any element must not crash the scan
        raise UnusableFile(path, DAMAGED, damaged.format(f"{type(exc).__name__}: {_short(exc)}")) from None


def _describe(path: Path, ds: Dataset) -> DicomFile:
    meta = getattr(ds, "file_meta", None) or Dataset()
    sop_class = _str(ds.get("SOPClassUID")) or _str(meta.get("MediaStorageSOPClassUID"))
    media_class = _str(meta.get("MediaStorageSOPClassUID"))
    if media_class and sop_class != media_class:
        # typically a header cut short inside the UID; either way the file cannot be trusted
        raise HeaderProblem(f"SOPClassUID {sop_class} disagrees with the file meta ({media_class})")
    sop_uid = _str(ds.get("SOPInstanceUID")) or _str(meta.get("MediaStorageSOPInstanceUID"))
    modality = _str(ds.get("Modality")).upper()
    if not modality and sop_class in CT_SOP_CLASSES:
        modality = "CT"
    if not sop_class and not modality:
        raise InvalidDicomError("neither SOPClassUID nor Modality")
    if not sop_class and modality == "CT" and ds.get("Rows"):
        # an old or stripped file without any SOP class: Rows says it is an image
        sop_class = CT_IMAGE_STORAGE
    image_type = tuple(str(v).upper() for v in _values(ds.get("ImageType")))
    try:
        n_frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        n_frames = 1
    if modality in NON_IMAGE_MODALITIES:
        n_frames = 1
    info = DicomFile(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_uid,
        series_uid=_str(ds.get("SeriesInstanceUID")),
        study_uid=_str(ds.get("StudyInstanceUID")),
        frame_of_reference_uid=_str(ds.get("FrameOfReferenceUID")),
        modality=modality,
        series_description=_str(ds.get("SeriesDescription")),
        image_type=image_type,
        n_frames=max(n_frames, 1),
        series_number=_str(ds.get("SeriesNumber")),
    )
    if info.is_ct_image:
        info.facts = _scanner_facts(ds)
        if (
            sop_class in (ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE)
            and not image_type
        ):
            # enhanced objects keep LOCALIZER in the per-frame FrameType; the file-level value is enough
            info.image_type = tuple(str(v).upper() for v in _values(_find(ds, "FrameType")))
        try:
            info.frames = _frames(path, ds, info)
        except HeaderProblem as exc:
            info.problem = str(exc)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            info.problem = f"unreadable geometry in the header ({type(exc).__name__}: {_short(exc)})"
    return info


def _frames(path: Path, ds: Dataset, info: DicomFile) -> list[Frame]:
    rows, cols = _int(ds.get("Rows"), "Rows"), _int(ds.get("Columns"), "Columns")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    if per_frame is None:
        if info.n_frames > 1:
            raise HeaderProblem(
                f"{info.n_frames} frames but no per-frame functional groups: the position of "
                "each frame is unknown; export the series as single-frame CT"
            )
        return [
            Frame(
                path=path,
                frame_index=None,
                sop_instance_uid=info.sop_instance_uid,
                position=_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient (0020,0032)"),
                orientation=_floats(
                    ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient (0020,0037)"
                ),
                pixel_spacing=_floats(ds.get("PixelSpacing"), 2, "PixelSpacing (0028,0030)"),
                rows=rows,
                columns=cols,
                slope=_slope(ds.get("RescaleSlope")),
                intercept=_float_or(ds.get("RescaleIntercept"), 0.0, "RescaleIntercept"),
            )
        ]
    if len(per_frame) != info.n_frames:
        raise HeaderProblem(
            f"NumberOfFrames is {info.n_frames} but {len(per_frame)} per-frame functional groups "
            "are present; the file is damaged"
        )
    frames = []
    for index, item in enumerate(per_frame):

        def group(seq: str, keyword: str, item: Dataset = item) -> Any:
            return _functional_group(ds, item, shared, seq, keyword)

        frames.append(
            Frame(
                path=path,
                frame_index=index,
                sop_instance_uid=info.sop_instance_uid,
                position=_floats(
                    group("PlanePositionSequence", "ImagePositionPatient"),
                    3,
                    f"ImagePositionPatient of frame {index + 1}",
                ),
                orientation=_floats(
                    group("PlaneOrientationSequence", "ImageOrientationPatient"),
                    6,
                    f"ImageOrientationPatient of frame {index + 1}",
                ),
                pixel_spacing=_floats(
                    group("PixelMeasuresSequence", "PixelSpacing"), 2, f"PixelSpacing of frame {index + 1}"
                ),
                rows=rows,
                columns=cols,
                slope=_slope(group("PixelValueTransformationSequence", "RescaleSlope")),
                intercept=_float_or(
                    group("PixelValueTransformationSequence", "RescaleIntercept"), 0.0, "RescaleIntercept"
                ),
            )
        )
    return frames


def _functional_group(ds: Dataset, item: Dataset, shared: Dataset | None, seq: str, keyword: str) -> Any:
    """Value of ``keyword`` for one frame: per-frame group first, then shared group, then top level."""
    for source in (item, shared):
        if source is None:
            continue
        sub = source.get(seq)
        if sub and keyword in sub[0]:
            return sub[0].get(keyword)
    return ds.get(keyword)


def _find(ds: Dataset, keyword: str) -> Any:
    """An attribute at the top level or one level into the shared / first per-frame functional groups."""
    if keyword in ds:
        return ds.get(keyword)
    for seq_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if not seq:
            continue
        for elem in seq[0]:
            if elem.VR == "SQ" and elem.value and keyword in elem.value[0]:
                return elem.value[0].get(keyword)
    return None


def _scanner_facts(ds: Dataset) -> dict[str, Any]:
    """Scanner and protocol facts (plain JSON types) that describe the CT domain (DESIGN §6)."""
    kernel = [str(v) for v in _values(_find(ds, "ConvolutionKernel")) if str(v)]
    return {
        "manufacturer": _str(ds.get("Manufacturer")) or None,
        "model": _str(ds.get("ManufacturerModelName")) or None,
        "kernel": ", ".join(kernel) or None,
        "kvp": _float_or_none(_find(ds, "KVP")),
        "slice_thickness": _float_or_none(_find(ds, "SliceThickness")),
        "patient_position": _str(ds.get("PatientPosition")) or None,
        # who and when, for the app's case header only (no bundle file carries them)
        "patient_id": _str(ds.get("PatientID")) or None,
        "patient_name": _str(ds.get("PatientName")) or None,
        "study_date": _str(ds.get("StudyDate")) or None,
    }


# ---- scanning folders --------------------------------------------------------------------------------------
def list_files(folder: Path, *, recursive: bool = True, unreadable: list[Path] | None = None) -> list[Path]:
    """Files under ``folder`` in a stable order; hidden files and folders (.DS_Store) ignored.

    Raises `OSError` when ``folder`` itself cannot be listed; sub-folders that cannot be listed are
    appended to ``unreadable`` (when given) and skipped. Pipes, sockets and devices are left out.
    """
    if not recursive:
        return sorted(p for p in folder.iterdir() if _is_regular(p) and not p.name.startswith("."))
    found: list[Path] = []
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=errors.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / n for n in sorted(filenames) if not n.startswith("."))
    for exc in errors:
        if exc.filename is not None and os.path.abspath(exc.filename) == os.path.abspath(folder):
            raise exc
        if unreadable is not None and exc.filename is not None:
            unreadable.append(Path(exc.filename))
    return [p for p in found if _is_regular(p)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # kept: reading its header says why it cannot be used


def scan_folder(
    folder: str | Path,
    *,
    recursive: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ScanResult:
    """Read the header of every file under ``folder``; unusable files are skipped and counted.

    Raises `InputError` naming the folder when it holds no file at all or no DICOM file.
    """
    folder = Path(folder)
    progress = report(progress)
    unreadable_folders: list[Path] = []
    try:
        paths = list_files(folder, recursive=recursive, unreadable=unreadable_folders)
    except OSError as exc:
        raise InputError(folder, f"cannot list the folder ({exc.strerror}); check its permissions") from None
    if not paths:
        if unreadable_folders:
            raise InputError(folder, f"{_plural(len(unreadable_folders), 'sub-folder')} cannot be read (permission "
                             f"denied, e.g. {_rel(unreadable_folders[0], folder)}) and no file is readable; ask for "
                             "read access")
        raise InputError(folder, "the folder is empty; give a folder holding a CT series")
    skipped: dict[str, list[Path]] = {EMPTY: [], NOT_DICOM: [], DAMAGED: [], UNREADABLE: list(unreadable_folders),
                                      DICOMDIR: []}
    files: list[DicomFile] = []
    for n, path in enumerate(paths):
        check_cancel(cancel)
        if n % 8 == 0:
            progress(n / len(paths), f"reading DICOM headers {n}/{len(paths)}")
        if path.name.upper() == "DICOMDIR":
            skipped[DICOMDIR].append(path)
            continue
        try:
            info = read_header(path)
        except UnusableFile as exc:
            skipped[exc.reason].append(path)
            continue
        if info.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            skipped[DICOMDIR].append(path)
            continue
        files.append(info)
    progress(1.0, f"read {len(files)} DICOM headers")
    result = ScanResult(folder, files, skipped)
    if not files:
        parts = ", ".join(f"{len(v)} {k}" for k, v in skipped.items() if v)
        raise InputError(
            folder,
            f"no DICOM image files here ({_plural(len(paths), 'file')}: {parts}); give a "
            "folder holding a CT series",
        )
    return result


def choose_ct_series(series: list[Series], where: Path) -> tuple[Series, list[Series]]:
    """The best CT series and the others.

    Best: CT image storage (classic or enhanced), not a localizer; then at least two images, then axial,
    then the most images. Raises `InputError` listing what was found when there is no CT series.
    """
    candidates = [s for s in series if s.is_ct]
    if not candidates:
        raise InputError(where, f"no CT series here; found {describe_found(series)}: give a CT series")
    best = max(candidates, key=lambda s: (s.n_images >= 2, s.is_axial, s.n_images))
    return best, [s for s in series if s is not best]


def describe_found(series: list[Series]) -> str:
    """e.g. "MR (1 series, 12 images), SEG (1 file)": what a folder holds, by kind."""
    by_kind: dict[str, list[Series]] = {}
    for s in series:
        by_kind.setdefault(s.kind, []).append(s)
    parts = []
    for kind, group in sorted(by_kind.items(), key=lambda kv: -sum(s.n_images for s in kv[1])):
        if group[0].is_image:
            parts.append(
                f"{kind} ({_plural(len(group), 'series', 'series')}, "
                f"{_plural(sum(s.n_images for s in group), 'image')})"
            )
        else:
            parts.append(f"{kind} ({_plural(sum(len(s.files) for s in group), 'file')})")
    return ", ".join(parts) or "nothing"


# ---- small helpers -----------------------------------------------------------------------------------------
def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _str(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip().strip("\x00").strip()


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HeaderProblem(f"{name} is missing or not a number; the header is damaged") from None


def _floats(value: Any, n: int, what: str) -> tuple[float, ...]:
    vals = _values(value)
    if not vals:
        raise HeaderProblem(
            f"no {what}: the image cannot be placed in patient space; export the series "
            "with its patient geometry"
        )
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        raise HeaderProblem(f"{what} is not numeric ({value!r}); the header is damaged") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise HeaderProblem(
            f"{what} should hold {n} finite numbers, found {list(vals)}; the header is damaged"
        )
    return out


def _float_or(value: Any, default: float, what: str) -> float:
    vals = _values(value)
    if not vals:
        return default
    try:
        out = float(vals[0])
    except (TypeError, ValueError):
        raise HeaderProblem(f"{what} is not a number ({value!r}); the header is damaged") from None
    if not math.isfinite(out):
        raise HeaderProblem(f"{what} is not finite; the header is damaged")
    return out


def _slope(value: Any) -> float:
    """RescaleSlope (default 1); zero or negative makes every CT value meaningless."""
    slope = _float_or(value, 1.0, "RescaleSlope")
    if slope <= 0:
        raise HeaderProblem(f"RescaleSlope is {slope:g}: the stored values cannot be turned into Hounsfield units; "
                            "export the series with its original rescale")
    return slope


def _float_or_none(value: Any) -> float | None:
    vals = _values(value)
    try:
        out = float(vals[0]) if vals else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and math.isfinite(out) else None


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _sop_name(uid: str) -> str:
    if not uid:
        return "unknown object"
    name = UID(uid).name
    return name.replace(" Storage", "") if name != uid else f"SOP class {uid}"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _short(exc: BaseException, limit: int = 80) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
