"""A corpus of bad and awkward inputs, made by code, and a runner that feeds each to the `spinenav` CLI.

Every item is a command line (``info``, ``analyze``, ``export-labels``, ``evaluate``, ``plan``) on a
generated input, with what must happen: ``ok`` (exit 0; for a CT, the geometry ``info --json``
prints must be the one written) or ``refuse`` (exit 2 and exactly one line on stderr, ``error: ``
followed by a path named in the item). Anything else is a failure: exit 1 (an internal error), a
signal (the process died), more than one line, a refusal of good input, or a success on input that
must be refused. Peak memory is measured too (resident set of the worker process).

Items run in worker processes (``python tests/input_corpus.py --worker ITEMS RESULTS``) that call
``inference.cli.main`` in-process, one item after the other, writing one JSON line per item; when
a worker dies on an item, that item is recorded as a crash and a new worker takes the next one.
Items about permissions run in a worker that gives up root's power to read any file (CI runs as
root): it drops the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH once its imports are done.

Run alone: ``python tests/input_corpus.py`` builds the corpus in a temporary folder and prints the
outcome table; ``tests/test_input_corpus.py`` runs it in the test suite.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BUDGET_GB = 4.0
"""Memory budget the workers run under (``SPINENAV_MEMORY_BUDGET_GB``): no item may grow past it."""



@dataclass
class Item:
    """One input and its command line. ``argv`` holds absolute paths (str, possibly with surrogates)."""

    name: str
    category: str
    argv: list[str]
    expect: str  # "ok" or "refuse"
    names: list[str] = field(default_factory=list)
    """paths any one of which a refusal must name (default: every path in argv)"""
    geometry: dict | None = None
    """for ``info`` items expected ok: size, spacing, origin, direction"""
    unprivileged: bool = False


# ---- volumes ------------------------------------------------------------------------------------------------
SHAPE = (14, 18, 22)  # k, j, i
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-16.3, 40.2, -120.5)


def ct_array(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """A small CT in HU (int16): air, a soft-tissue body, a bone rod, noise."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    body = ((j - shape[1] / 2) / (shape[1] * 0.45)) ** 2 + ((i - shape[2] / 2) / (shape[2] * 0.45)) ** 2 < 1
    rod = ((j - shape[1] * 0.6) ** 2 + (i - shape[2] / 2) ** 2) < (min(shape[1:]) * 0.15) ** 2
    hu = np.where(body, 40.0, -1000.0)
    hu[rod] = 700.0
    hu += rng.normal(0, 15, shape)
    return np.round(hu).astype(np.int16)


def _sitk_image(arr, spacing=SPACING, origin=ORIGIN, direction=None):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(tuple(np.asarray(direction, float).flatten()))
    return img


def write_sitk(path: Path, arr, *, compress: bool = False, **geometry) -> Path:
    """Write with SimpleITK under a plain temporary name, then rename (ITK cannot write odd names itself)."""
    import SimpleITK as sitk

    name = os.path.basename(path).lower()
    suffix = next((s for s in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd") if name.endswith(s)), "")
    if suffix in (".nhdr", ".mhd"):  # detached data files are named after the header: write in place
        tmp = str(path)
    else:
        tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f"writing{suffix}")
    writer = sitk.ImageFileWriter()
    writer.SetFileName(tmp)
    writer.SetUseCompression(compress)
    writer.Execute(_sitk_image(arr, **geometry))
    if tmp != str(path):
        os.rename(tmp, path)
    return Path(path)


def expected(arr=None, spacing=SPACING, origin=ORIGIN, direction=None) -> dict:
    shape = (arr if arr is not None else np.zeros(SHAPE)).shape
    return {"size": [shape[2], shape[1], shape[0]], "spacing": list(spacing), "origin": list(origin),
            "direction": list(np.asarray(direction if direction is not None else np.eye(3), float).flatten())}


def _fs(path: Path | bytes) -> str:
    return os.fsdecode(os.path.abspath(path))


# ---- the corpus ---------------------------------------------------------------------------------------------
def build_corpus(root: Path) -> list[Item]:
    """Write every input under ``root`` and return the items (a few hundred)."""
    root.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    for maker in (_orientations, _names_and_siblings, _truncations, _dicom_tags, _odd_headers, _non_hu,
                  _giant, _path_kinds, _permissions, _commands):
        folder = root / maker.__name__.strip("_")
        folder.mkdir()
        items += maker(folder)
    return items


def _info(name, category, path, expect, geometry=None, **kw) -> Item:
    p = _fs(path)
    return Item(name, category, ["info", "--json", p], expect, [p], geometry, **kw)


def _orientations(d: Path) -> list[Item]:
    """Layouts that must read with exact geometry: 10 NIfTI directions × 2, NRRD, MHA, DICOM orientations."""
    from dicom_factory import CTSpec, write_ct_series

    items = []
    directions = {
        "identity": np.eye(3), "flip_i": np.diag([-1, 1, 1]), "flip_j": np.diag([1, -1, 1]),
        "flip_k": np.diag([1, 1, -1]), "flip_ij": np.diag([-1, -1, 1]),
        "rot90": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
        "perm_kij": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
        "perm_jki": np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
        "sagittal": np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]]),
        "coronal": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]),
    }
    arr = ct_array()
    for label, m in directions.items():
        for suffix in (".nii", ".nii.gz"):
            p = write_sitk(d / f"{label}{suffix}", arr, direction=m)
            items.append(_info(f"nifti {label} {suffix}", "orientation", p, "ok", expected(arr, direction=m)))
    oblique = np.array([[0.8660254, -0.5, 0], [0.5, 0.8660254, 0], [0, 0, 1]])
    for suffix, compress in ((".nrrd", False), (".nrrd", True), (".mha", False), (".mha", True), (".mhd", False),
                             (".nhdr", False)):
        for label, m in (("identity", np.eye(3)), ("oblique", oblique)):
            tag = "gz" if compress else "raw"
            p = write_sitk(d / f"{label}_{tag}{suffix}", arr, compress=compress, direction=m)
            items.append(_info(f"{suffix} {tag} {label}", "orientation", p, "ok", expected(arr, direction=m)))
    specs = {
        "axial": CTSpec(),
        "axial_feet_first": CTSpec(patient_position="FFS", order="descending"),
        "axial_shuffled": CTSpec(order="shuffled", seed=3),
        "sagittal": CTSpec(row_cosine=(0, 1, 0), col_cosine=(0, 0, -1)),
        "coronal": CTSpec(row_cosine=(1, 0, 0), col_cosine=(0, 0, -1)),
        "oblique": CTSpec(row_cosine=(0.8660254, 0.5, 0), col_cosine=(-0.5, 0.8660254, 0)),
    }
    for label, spec in specs.items():
        series = write_ct_series(d / f"dicom_{label}", spec)
        geom = {"size": [spec.columns, spec.rows, spec.n_slices], "spacing": list(spec.spacing),
                "origin": list(series.positions[0]), "direction": list(spec.direction.flatten())}
        items.append(_info(f"dicom {label}", "orientation", d / f"dicom_{label}", "ok", geom))
    return items


def _names_and_siblings(d: Path) -> list[Item]:
    """Odd but valid file names, links, and a sibling that a NIfTI reader would read instead."""
    from dicom_factory import CTSpec, write_ct_series

    items = []
    arr = ct_array()
    geom = expected(arr)
    for label, name in (("spaces", "my ct scan.nii.gz"), ("accents", "tête_é.nii.gz"), ("cjk", "脊椎.nii.gz"),
                        ("newline", "ct\nnext.nii.gz"), ("tab", "ct\tx.nii.gz"), ("upper", "CT.NII.GZ"),
                        ("dash", "-ct.nii.gz"), ("long_250", "c" * 243 + ".nii.gz"), ("quote", "o'brien \"ct\".nrrd")):
        p = write_sitk(Path(os.path.join(d, name)), arr) if not name.endswith(".nrrd") else write_sitk(d / name, arr)
        items.append(_info(f"name {label}", "names", p, "ok", geom))
    raw_name = os.path.join(os.fsencode(d), b"latin1_\xe9\xff.nii.gz")
    shutil.copy(write_sitk(d / "tmp_src.nii.gz", arr), raw_name)
    items.append(_info("name not UTF-8", "names", raw_name, "ok", geom))
    raw_dir = os.path.join(os.fsencode(d), b"dicom_\xff")
    os.mkdir(raw_dir)
    spec = CTSpec()
    series = write_ct_series(Path(os.fsdecode(raw_dir)), spec)
    for n, f in enumerate(series.paths):  # file names not UTF-8 either
        os.rename(f, os.path.join(raw_dir, b"s\xfe%d.dcm" % n))
    dgeom = {"size": [spec.columns, spec.rows, spec.n_slices], "spacing": list(spec.spacing),
             "origin": list(series.positions[0]), "direction": list(spec.direction.flatten())}
    items.append(_info("DICOM folder and files not UTF-8", "names", raw_dir, "ok", dgeom))
    os.symlink(d / "my ct scan.nii.gz", d / "link.nii.gz")
    items.append(_info("symbolic link to a CT", "names", d / "link.nii.gz", "ok", geom))
    # siblings: X.nii.gz beside X.nii holding another (smaller) scan
    other = ct_array((9, 18, 22), seed=5)
    sib = d / "sibling"
    sib.mkdir()
    write_sitk(sib / "X.nii.gz", arr)
    write_sitk(sib / "X.nii", other, spacing=(1.0, 1.0, 1.0))
    items.append(_info("X.nii.gz with X.nii beside", "siblings", sib / "X.nii.gz", "ok", geom))
    items.append(_info("X.nii with X.nii.gz beside", "siblings", sib / "X.nii", "ok",
                       expected(other, spacing=(1.0, 1.0, 1.0))))
    return items


def _cuts(size: int) -> list[int]:
    """Lengths to cut a file of ``size`` bytes to: fractions of it and a few bytes off the end."""
    keep = {int(size * f) for f in (0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 0.99)}
    keep |= {size - n for n in (1, 2, 4, 100, 351, 352, 353, 1000) if size - n > 0}
    return sorted(k for k in keep if 0 < k < size)


def _truncations(d: Path) -> list[Item]:
    """Every format cut at many points: each must be refused (a cut file always loses voxels)."""
    from dicom_factory import CTSpec, write_ct_series

    items = []
    arr = ct_array()
    for label, suffix, compress in (("nifti", ".nii", False), ("nifti gz", ".nii.gz", False),
                                    ("nrrd raw", ".nrrd", False), ("nrrd gz", ".nrrd", True),
                                    ("mha raw", ".mha", False), ("mha zlib", ".mha", True)):
        src = write_sitk(d / f"full_{label.replace(' ', '_')}{suffix}", arr, compress=compress)
        data = src.read_bytes()
        for n in _cuts(len(data)):
            p = d / f"cut{n}_{src.name}"
            p.write_bytes(data[:n])
            items.append(_info(f"{label} cut to {n} of {len(data)} bytes", "truncation", p, "refuse"))
        src.unlink()
    series = write_ct_series(d / "dicom_src", CTSpec())
    middle = series.paths[len(series.paths) // 2].read_bytes()
    for n in _cuts(len(middle))[::2]:
        folder = d / f"dicom_cut{n}"
        shutil.copytree(d / "dicom_src", folder)
        (folder / series.paths[len(series.paths) // 2].name).write_bytes(middle[:n])
        items.append(_info(f"DICOM series, middle slice cut to {n} of {len(middle)} bytes", "truncation", folder,
                           "refuse"))
    shutil.rmtree(d / "dicom_src")
    return items


def _mutated_series(d: Path, label: str, mutate, n_slices: int = 8, which: str = "all") -> Path:
    """A DICOM series whose files (all, or the middle one) pass through ``mutate(ds)``."""
    import pydicom
    from dicom_factory import CTSpec, write_ct_series

    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    folder = d / label
    series = write_ct_series(folder, CTSpec(n_slices=n_slices))
    targets = series.paths if which == "all" else [series.paths[len(series.paths) // 2]]
    for p in targets:
        ds = pydicom.dcmread(p)
        mutate(ds)
        ds.save_as(p, enforce_file_format=False)
    return folder


def _dicom_tags(d: Path) -> list[Item]:
    """Broken DICOM headers and pixel data, and series an anonymiser mixed up."""
    from dicom_factory import CTSpec, write_ct_series

    def setter(**values):
        def mutate(ds):
            for k, v in values.items():
                if k in ds:
                    delattr(ds, k)
                if isinstance(v, tuple):  # ("LO", text): a value its own VR could not hold
                    from pydicom.datadict import tag_for_keyword

                    ds.add_new(tag_for_keyword(k), v[0], v[1])
                elif v is not None:
                    setattr(ds, k, v)
        return mutate

    def longer(ds):  # pixel data of a bigger image than Rows × Columns say
        ds.PixelData = ds.PixelData + ds.PixelData[: 2 * ds.Columns * 3]

    def rows_smaller(ds):
        ds.Rows = ds.Rows - 2

    def shorter(ds):
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]

    cases = [
        ("no ImagePositionPatient in one slice", setter(ImagePositionPatient=None), "middle", "refuse"),
        ("ImagePositionPatient not numbers", setter(ImagePositionPatient=("LO", "a\\b\\c")), "middle", "refuse"),
        ("ImageOrientationPatient zeros", setter(ImageOrientationPatient=[0, 0, 0, 0, 0, 0]), "all", "refuse"),
        ("ImageOrientationPatient not orthogonal", setter(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]), "all", "refuse"),
        ("ImageOrientationPatient differs in one slice", setter(ImageOrientationPatient=[0, 1, 0, 0, 0, -1]),
         "middle", "refuse"),
        ("PixelSpacing 0", setter(PixelSpacing=[0, 0]), "all", "refuse"),
        ("PixelSpacing negative", setter(PixelSpacing=[-0.8, -0.8]), "all", "refuse"),
        ("PixelSpacing missing", setter(PixelSpacing=None), "all", "refuse"),
        ("PixelSpacing 300 mm", setter(PixelSpacing=[300, 300]), "all", "refuse"),
        ("PixelSpacing differs in one slice", setter(PixelSpacing=[0.5, 0.5]), "middle", "refuse"),
        ("Rows 0", setter(Rows=0), "all", "refuse"),
        ("Rows smaller than the pixel data", rows_smaller, "all", "refuse"),
        ("pixel data longer than Rows x Columns", longer, "all", "refuse"),
        ("pixel data shorter than Rows x Columns", shorter, "middle", "refuse"),
        ("BitsAllocated missing", setter(BitsAllocated=None), "all", "refuse"),
        ("BitsAllocated 8 with 16-bit data", setter(BitsAllocated=8, BitsStored=8, HighBit=7), "all", "refuse"),
        ("SamplesPerPixel 3", setter(SamplesPerPixel=3, PhotometricInterpretation="RGB"), "all", "refuse"),
        ("RescaleSlope 0", setter(RescaleSlope=0), "all", "refuse"),
        ("RescaleSlope negative", setter(RescaleSlope=-1), "all", "refuse"),
        ("RescaleSlope 1e6", setter(RescaleSlope=1e6), "all", "refuse"),
        ("RescaleSlope 1e30", setter(RescaleSlope="1e30"), "all", "refuse"),
        ("RescaleSlope 0.001", setter(RescaleSlope=0.001, RescaleIntercept=0), "all", "refuse"),
        ("RescaleSlope not a number", setter(RescaleSlope=("LO", "abc")), "all", "refuse"),
        ("RescaleIntercept 1e9", setter(RescaleIntercept=1e9), "all", "refuse"),
        ("NumberOfFrames 5 in a single-frame file", setter(NumberOfFrames=5), "all", "refuse"),
        ("one slice is MR", setter(SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR"), "middle", "refuse"),
        ("all slices are a secondary capture", setter(SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), "all", "refuse"),
        ("same position in two slices", setter(ImagePositionPatient=None), "none", "refuse"),
    ]
    items = []
    for label, mutate, which, expect in cases:
        slug = "".join(c if c.isalnum() else "_" for c in label)
        if label.startswith("same position"):
            folder = d / slug
            series = write_ct_series(folder, CTSpec(n_slices=6))
            shutil.copy(series.paths[2], folder / "copy_with_new_uid.dcm")
            import pydicom

            ds = pydicom.dcmread(folder / "copy_with_new_uid.dcm")
            ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(folder / "copy_with_new_uid.dcm", enforce_file_format=False)
        else:
            folder = _mutated_series(d, slug, mutate, which=which)
        items.append(_info(f"DICOM: {label}", "dicom tags", folder, expect))
    # a missing slice
    folder = d / "missing_slice"
    series = write_ct_series(folder, CTSpec(n_slices=8))
    series.paths[4].unlink()
    items.append(_info("DICOM: a slice missing in the middle", "dicom tags", folder, "refuse"))
    # two anonymised series without SeriesInstanceUID: different number, kernel and (interleaved) positions
    folder = d / "two_series_no_uid"
    a = CTSpec(n_slices=6, series_uid="", prefix="a", frame_of_reference_uid="1.2.3")
    b = CTSpec(n_slices=6, series_uid="", prefix="b", frame_of_reference_uid="1.2.3",
               origin=(-10.0, -8.0, 21.0))
    sa = write_ct_series(folder, a)
    write_ct_series(folder, b)
    import pydicom

    for p in sorted(folder.glob("b*.dcm")):
        ds = pydicom.dcmread(p)
        ds.SeriesNumber = 2
        ds.ConvolutionKernel = "B70f"
        ds.save_as(p, enforce_file_format=False)
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        del ds.SeriesInstanceUID
        ds.save_as(p, enforce_file_format=False)
    geom = {"size": [a.columns, a.rows, a.n_slices], "spacing": list(a.spacing), "origin": None,
            "direction": list(a.direction.flatten())}
    del sa
    items.append(_info("DICOM: two series without SeriesInstanceUID in one folder", "dicom tags", folder, "ok", geom))
    return items


def _nifti_bytes(arr, mutate, *, gz=False) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(arr.transpose(2, 1, 0), np.diag([-0.8, -0.9, 2.5, 1.0]))
    hdr = img.header
    mutate(hdr)
    raw = hdr.binaryblock + b"\0\0\0\0" + np.asarray(arr.transpose(2, 1, 0), order="F").tobytes(order="F")
    return gzip.compress(raw, mtime=0) if gz else raw


def _odd_headers(d: Path) -> list[Item]:
    """Headers ITK would repair or misread: zero/NaN sizes, NaN orientation, 2D/4D, odd types."""
    items = []
    arr = ct_array()

    def nifti(label, mutate, expect="refuse", gz=False):
        p = d / f"{label}.nii{'.gz' if gz else ''}"
        p.write_bytes(_nifti_bytes(arr, mutate, gz=gz))
        items.append(_info(f"NIfTI: {label}", "odd headers", p, expect))

    def setp(index, value):
        def m(h):
            pix = h["pixdim"].copy()
            pix[index] = value
            h["pixdim"] = pix
        return m

    def sets(key, value):
        def m(h):
            h[key] = value
        return m

    for gz in (False, True):
        tag = "_gz" if gz else ""
        nifti(f"pixdim1_zero{tag}", setp(1, 0), gz=gz)
        nifti(f"pixdim2_nan{tag}", setp(2, np.nan), gz=gz)
        nifti(f"pixdim3_negative{tag}", setp(3, -2.5), gz=gz)
        nifti(f"pixdim3_inf{tag}", setp(3, np.inf), gz=gz)
    nifti("qform_nan", lambda h: (h.__setitem__("qform_code", 1), h.__setitem__("quatern_b", np.nan)))
    nifti("qoffset_nan", lambda h: (h.__setitem__("qform_code", 1), h.__setitem__("qoffset_x", np.nan)))
    nifti("sform_nan", lambda h: (h.__setitem__("sform_code", 1), h.__setitem__("srow_x", [np.nan, 0, 0, 0])))
    nifti("sform_degenerate", lambda h: (h.__setitem__("sform_code", 1), h.__setitem__("qform_code", 0),
                                         h.__setitem__("srow_x", [1, 0, 0, 0]), h.__setitem__("srow_y", [1, 0, 0, 0])))
    nifti("scl_slope_1e6", sets("scl_slope", 1e6))
    nifti("scl_slope_1e30", sets("scl_slope", 1e30))
    nifti("scl_slope_0.001", lambda h: (h.__setitem__("scl_slope", 0.001), h.__setitem__("scl_inter", 0)))
    nifti("scl_inter_1e9", lambda h: (h.__setitem__("scl_slope", 1), h.__setitem__("scl_inter", 1e9)))
    nifti("vox_offset_past_end", sets("vox_offset", 10_000_000))
    # valid: NIfTI's scl_slope 0 means "no scaling"
    nifti("scl_slope_0_means_none", sets("scl_slope", 0), expect="ok")
    import nibabel as nib

    for label, img in (("2D", nib.Nifti1Image(np.zeros((20, 20), np.int16), np.eye(4))),
                       ("4D three volumes", nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.int16), np.eye(4))),
                       ("complex64", nib.Nifti1Image(np.zeros((8, 8, 8), np.complex64), np.eye(4))),
                       ("single slice", nib.Nifti1Image(np.zeros((20, 20, 1), np.int16), np.eye(4)))):
        p = d / f"{label.replace(' ', '_')}.nii.gz"
        nib.save(img, p)
        items.append(_info(f"NIfTI: {label}", "odd headers", p, "refuse"))
    rgb = nib.Nifti1Image(np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), np.eye(4))
    nib.save(rgb, d / "rgb.nii.gz")
    items.append(_info("NIfTI: RGB voxels", "odd headers", d / "rgb.nii.gz", "refuse"))

    raw = arr.astype("<i2").tobytes()
    base = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 22 18 14\n"
            "space directions: (0.8,0,0) (0,0.9,0) (0,0,2.5)\nkinds: domain domain domain\nendian: little\n"
            "encoding: raw\nspace origin: (0,0,0)\n")
    nrrd_cases = {
        "spacing_nan": base.replace("(0.8,0,0)", "(nan,0,0)"),
        "spacing_zero": base.replace("(0.8,0,0)", "(0,0,0)"),
        "directions_degenerate": base.replace("(0,0.9,0)", "(0.8,0,0)"),
        "origin_nan": base.replace("space origin: (0,0,0)", "space origin: (nan,0,0)"),
        "sizes_missing": base.replace("sizes: 22 18 14\n", ""),
        "type_unknown": base.replace("type: short", "type: quaternion"),
        "encoding_unknown": base.replace("encoding: raw", "encoding: zip7"),
        "dimension_2": base.replace("dimension: 3", "dimension: 2"),
        "spacing_300mm": base.replace("(0.8,0,0) (0,0.9,0)", "(300,0,0) (0,300,0)"),
        "spacing_1e-6": base.replace("(0.8,0,0)", "(0.000001,0,0)"),
    }
    for label, header in nrrd_cases.items():
        p = d / f"{label}.nrrd"
        p.write_bytes(header.encode() + b"\n" + raw)
        items.append(_info(f"NRRD: {label}", "odd headers", p, "refuse"))
    mha_base = ("ObjectType = Image\nNDims = 3\nElementSpacing = 0.8 0.9 2.5\nDimSize = 22 18 14\n"
                "ElementType = MET_SHORT\nOffset = 0 0 0\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n")
    mha_cases = {
        "spacing_zero": mha_base.replace("0.8 0.9 2.5", "0 0.9 2.5"),
        "spacing_nan": mha_base.replace("0.8 0.9 2.5", "nan 0.9 2.5"),
        "spacing_negative": mha_base.replace("0.8 0.9 2.5", "-0.8 0.9 2.5"),
        "offset_nan": mha_base.replace("Offset = 0 0 0", "Offset = nan 0 0"),
        "matrix_sheared": mha_base.replace("1 0 0 0 1 0 0 0 1", "1 0 0 0.5 1 0 0 0 1"),
        "matrix_zero": mha_base.replace("1 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0"),
        "ndims_2": mha_base.replace("NDims = 3", "NDims = 2"),
        "three_channels": mha_base + "ElementNumberOfChannels = 3\n",
        "element_type_unknown": mha_base.replace("MET_SHORT", "MET_QUATERNION"),
    }
    for label, header in mha_cases.items():
        p = d / f"{label}.mha"
        p.write_bytes(header.encode() + b"ElementDataFile = LOCAL\n" + raw)
        items.append(_info(f"MHA: {label}", "odd headers", p, "refuse"))
    return items


def _non_hu(d: Path) -> list[Item]:
    """Images that are not CT in HU, in every stored type: label maps, masks, pictures, constant images."""
    items = []
    shape = SHAPE
    k = np.indices(shape)[0]
    labels = np.zeros(shape, np.uint8)
    for n, vid in enumerate((22, 21, 20)):
        labels[(k >= 4 * n + 1) & (k < 4 * n + 4)] = vid
    mask = (labels > 0).astype(np.uint8)
    rng = np.random.default_rng(7)
    picture = rng.uniform(0, 255, shape)
    arrays = {
        "uint8 label map": labels,
        "int16 label map": labels.astype(np.int16),
        "float32 label map": labels.astype(np.float32),
        "float64 VerSe-style mask": labels.astype(np.float64),
        "uint8 0-1 mask": mask,
        "float32 0-1 mask": mask.astype(np.float32),
        "float64 0-1 mask": mask.astype(np.float64),
        "uint8 picture 0-255": picture.astype(np.uint8),
        "float32 picture 0-255": picture.astype(np.float32),
        "float32 picture 0-1": (picture / 255).astype(np.float32),
        "float32 probability map": rng.uniform(0, 1, shape).astype(np.float32),
        "int16 constant -1000": np.full(shape, -1000, np.int16),
        "float32 constant 40": np.full(shape, 40, np.float32),
        "float32 HU x 0.001": (ct_array() * 0.001).astype(np.float32),
        "float64 HU x 1e6": ct_array().astype(np.float64) * 1e6,
    }
    for label, arr in arrays.items():
        for suffix in (".nii.gz", ".nrrd"):
            p = write_sitk(d / f"{label.replace(' ', '_')}{suffix}", arr)
            items.append(_info(f"{label} ({suffix})", "non-HU", p, "refuse"))
    good = ct_array().astype(np.float64)
    for label, arr in (("float64 HU", good), ("float32 HU", good.astype(np.float32)),
                       ("int32 HU", ct_array().astype(np.int32))):
        p = write_sitk(d / f"{label.replace(' ', '_')}.nii.gz", arr)
        items.append(_info(f"{label} (valid)", "non-HU", p, "ok", expected(arr)))
    return items


def _giant(d: Path) -> list[Item]:
    """Small files whose headers declare huge grids: refused from the header, before allocating."""
    items = []
    p = d / "doubles_1260x1260x1259.nrrd"
    p.write_bytes(b"NRRD0004\ntype: double\ndimension: 3\nspace: left-posterior-superior\nsizes: 1260 1260 1259\n"
                  b"space directions: (0.5,0,0) (0,0.5,0) (0,0,0.5)\nkinds: domain domain domain\nendian: little\n"
                  b"encoding: gzip\nspace origin: (0,0,0)\n\n" + gzip.compress(b"\0" * 216_000, mtime=0))
    items.append(_info("NRRD declaring 1260²×1259 doubles (216 KB file)", "giant", p, "refuse"))
    p = d / "raw_4000cube.nrrd"
    p.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4000 4000 4000\n"
                  b"space directions: (0.1,0,0) (0,0.1,0) (0,0,0.1)\nkinds: domain domain domain\nendian: little\n"
                  b"encoding: raw\nspace origin: (0,0,0)\n\n" + b"\0" * 1000)
    items.append(_info("NRRD declaring 4000³ shorts", "giant", p, "refuse"))
    p = d / "mha_3000cube.mha"
    p.write_bytes(b"ObjectType = Image\nNDims = 3\nElementSpacing = 0.2 0.2 0.2\nDimSize = 3000 3000 3000\n"
                  b"ElementType = MET_FLOAT\nCompressedData = True\nElementDataFile = LOCAL\n" + b"x" * 100)
    items.append(_info("MHA declaring 3000³ floats", "giant", p, "refuse"))
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2000, 2000, 1500))
    hdr.set_data_dtype(np.float64)
    hdr.set_zooms((0.5, 0.5, 0.5))
    hdr["vox_offset"] = 352
    p = d / "nifti_2000x2000x1500_float64.nii"
    p.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 5000)
    items.append(_info("NIfTI declaring 2000²×1500 doubles", "giant", p, "refuse"))
    p = d / "nifti_2000x2000x1500_float64.nii.gz"
    p.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 5004, mtime=0))
    items.append(_info("NIfTI.gz declaring 2000²×1500 doubles", "giant", p, "refuse"))
    for label, spacing in (("30 mm pixels", (30.0, 30.0, 2.5)), ("300 mm pixels", (300.0, 300.0, 2.5))):
        arr = ct_array((10, 96, 96))
        p = write_sitk(d / f"{label.replace(' ', '_')}.nii.gz", arr, spacing=spacing)
        items.append(_info(f"512-wide-like grid of {label}", "giant", p, "refuse"))
    from dicom_factory import CTSpec, write_ct_series

    folder = _mutated_series(d, "dicom_rows_65535", lambda ds: (setattr(ds, "Rows", 65535),
                                                                   setattr(ds, "Columns", 65535)))
    items.append(_info("DICOM declaring 65535×65535 pixels", "giant", folder, "refuse"))
    folder = d / "dicom_step_500mm"
    write_ct_series(folder, CTSpec(n_slices=8, step=500.0))
    items.append(_info("DICOM with 500 mm between slices", "giant", folder, "refuse"))
    return items


def _path_kinds(d: Path) -> list[Item]:
    """Paths that are not a file or folder to read: missing, loops, pipes, devices, names too long, empty."""
    items = []
    os.mkfifo(d / "pipe.nii.gz")
    items.append(_info("a named pipe (FIFO)", "path kinds", d / "pipe.nii.gz", "refuse"))
    os.symlink(d / "loop_b.nii.gz", d / "loop_a.nii.gz")
    os.symlink(d / "loop_a.nii.gz", d / "loop_b.nii.gz")
    items.append(_info("a symbolic link loop", "path kinds", d / "loop_a.nii.gz", "refuse"))
    os.symlink(d / "gone.nii.gz", d / "dangling.nii.gz")
    items.append(_info("a broken symbolic link", "path kinds", d / "dangling.nii.gz", "refuse"))
    items.append(_info("a missing file", "path kinds", d / "missing.nii.gz", "refuse"))
    items.append(_info("a name over 255 bytes", "path kinds", d / ("x" * 300 + ".nii.gz"), "refuse"))
    items.append(_info("a folder over 255 bytes in the path", "path kinds", d / ("y" * 260) / "ct.nii.gz", "refuse"))
    (d / "folder.nii.gz").mkdir()
    items.append(_info("a folder named like a NIfTI file", "path kinds", d / "folder.nii.gz", "refuse"))
    (d / "empty.nii.gz").write_bytes(b"")
    items.append(_info("an empty file", "path kinds", d / "empty.nii.gz", "refuse"))
    (d / "empty_folder").mkdir()
    items.append(_info("an empty folder", "path kinds", d / "empty_folder", "refuse"))
    (d / "text.nii.gz").write_text("not an image\n")
    items.append(_info("a text file named .nii.gz", "path kinds", d / "text.nii.gz", "refuse"))
    (d / "notes.txt").write_text("hello\n")
    items.append(_info("a text file", "path kinds", d / "notes.txt", "refuse"))
    items.append(_info("a character device", "path kinds", Path("/dev/null"), "refuse"))
    sock = d / "socket"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock))
        items.append(_info("a socket", "path kinds", sock, "refuse"))
    except OSError:
        pass
    finally:
        s.close()
    (d / "a_file").write_text("x")
    items.append(_info("a path through a file", "path kinds", d / "a_file" / "ct.nii.gz", "refuse"))
    return items


def _permissions(d: Path) -> list[Item]:
    """Unreadable files and folders (run by a worker without root's privileges)."""
    from dicom_factory import CTSpec, write_ct_series

    items = []
    arr = ct_array()
    p = write_sitk(d / "unreadable.nii.gz", arr)
    os.chmod(p, 0)
    items.append(_info("an unreadable file", "permissions", p, "refuse", unprivileged=True))
    locked = d / "locked"
    locked.mkdir()
    write_sitk(locked / "ct.nii.gz", arr)
    os.chmod(locked, 0)
    items.append(_info("a file in an unreadable folder", "permissions", locked / "ct.nii.gz", "refuse",
                       unprivileged=True))
    write_ct_series(d / "dicom_locked", CTSpec(n_slices=6))
    os.chmod(d / "dicom_locked", 0)
    items.append(_info("an unreadable DICOM folder", "permissions", d / "dicom_locked", "refuse", unprivileged=True))
    series = write_ct_series(d / "dicom_one_locked", CTSpec(n_slices=6))
    os.chmod(series.paths[3], 0)
    items.append(_info("a DICOM series with one unreadable slice", "permissions", d / "dicom_one_locked", "refuse",
                       unprivileged=True))
    series = write_ct_series(d / "dicom_all_locked", CTSpec(n_slices=4))
    for f in series.paths:
        os.chmod(f, 0)
    items.append(_info("a DICOM folder of unreadable files", "permissions", d / "dicom_all_locked", "refuse",
                       unprivileged=True))
    outer = d / "dicom_sub_locked"
    write_ct_series(outer / "series", CTSpec(n_slices=4))
    os.chmod(outer / "series", 0)
    items.append(_info("a DICOM folder whose only sub-folder is unreadable", "permissions", outer, "refuse",
                       unprivileged=True))
    good = write_sitk(d / "good.nii.gz", arr)
    ro = d / "read_only_parent"
    ro.mkdir()
    os.chmod(ro, 0o555)
    out = _fs(ro / "bundle")
    items.append(Item("analyze into a read-only folder", "permissions", ["analyze", _fs(good), "-o", out], "refuse",
                      [out], unprivileged=True))
    return items


def _commands(d: Path) -> list[Item]:
    """Whole commands on awkward input: tiny volumes, output-folder policy, label maps, evaluate, plan."""
    from inference.export import export_labels

    items = []
    arr = ct_array()
    ct = write_sitk(d / "ct.nii.gz", arr)
    for label, a, spacing in (("2 slices", ct_array((2, 64, 64)), (1.0, 1.0, 3.0)),
                              ("2x2x2", ct_array((2, 2, 2)), (1.0, 1.0, 1.0)),
                              ("3 voxels wide", ct_array((40, 40, 3)), (1.0, 1.0, 1.0)),
                              ("12 mm pixels", ct_array((20, 60, 60)), (12.0, 12.0, 5.0))):
        p = write_sitk(d / f"analyze_{label.replace(' ', '_')}.nii.gz", a, spacing=spacing)
        out = _fs(d / f"out_{label.replace(' ', '_')}")
        items.append(Item(f"analyze on {label}", "commands", ["analyze", _fs(p), "-o", out], "refuse", [_fs(p)]))
    # the output-folder policy
    case = d / "case"
    case.mkdir()
    case_ct = write_sitk(case / "ct.nii.gz", arr)
    items.append(Item("analyze -o the folder holding the input --force", "output policy",
                      ["analyze", _fs(case_ct), "-o", _fs(case), "--force"], "refuse", [_fs(case)]))
    docs = d / "documents"
    docs.mkdir()
    (docs / "letter.txt").write_text("keep me\n")
    items.append(Item("analyze -o a documents folder --force", "output policy",
                      ["analyze", _fs(ct), "-o", _fs(docs), "--force"], "refuse", [_fs(docs)]))
    items.append(Item("analyze -o / --force", "output policy", ["analyze", _fs(ct), "-o", "/", "--force"], "refuse",
                      ["/"]))
    home = d / "home"
    home.mkdir()
    (home / ".profile").write_text("x\n")
    items.append(Item("analyze -o $HOME --force", "output policy", ["analyze", _fs(ct), "-o", _fs(home), "--force"],
                      "refuse", [_fs(home)]))
    from dicom_factory import CTSpec, write_ct_series

    write_ct_series(d / "dicom_in", CTSpec(n_slices=12))
    inside = _fs(d / "dicom_in" / "bundle")
    items.append(Item("analyze -o a folder inside the input DICOM folder", "output policy",
                      ["analyze", _fs(d / "dicom_in"), "-o", inside], "refuse", [inside]))
    items.append(Item("export-labels -o the folder holding the labels --force", "output policy",
                      ["export-labels", _fs(_vertebra_map(d / "lm" / "labels.nii.gz")), "-o", _fs(d / "lm"),
                       "--force"], "refuse", [_fs(d / "lm")]))
    items.append(Item("export-labels -o a documents folder --force", "output policy",
                      ["export-labels", _fs(_vertebra_map(d / "labels2.nii.gz")), "-o", _fs(docs), "--force"],
                      "refuse", [_fs(docs)]))
    # label maps that are not one label per vertebra, and one whose masks overlap
    k = np.indices((60, 20, 20))[0]
    bodydisc = np.zeros((60, 20, 20), np.uint8)
    bodydisc[(k % 12) < 8] = 1
    bodydisc[(k % 12) >= 9] = 2
    p = write_sitk(d / "body_disc.nii.gz", bodydisc, spacing=(1.0, 1.0, 3.0))
    items.append(Item("export-labels on a body/disc map (1 = bodies, 2 = discs)", "label maps",
                      ["export-labels", _fs(p), "-o", _fs(d / "out_bd")], "refuse", [_fs(p)]))
    sub = np.zeros((30, 40, 40), np.uint8)
    for n, sid in enumerate(range(41, 51)):
        sub[2:28, 4 * n: 4 * n + 4, 5:35] = sid
    p = write_sitk(d / "subregions.nii.gz", sub, spacing=(1.0, 1.0, 1.0))
    items.append(Item("export-labels on a VerSe subregion map (41-50)", "label maps",
                      ["export-labels", _fs(p), "-o", _fs(d / "out_sub")], "refuse", [_fs(p)]))
    folder = d / "ts_masks"
    folder.mkdir()
    full = _vertebra_array()
    for vid, name in ((20, "L1"), (21, "L2"), (22, "L3")):
        m = (full == vid).astype(np.uint8)
        grown = np.zeros_like(m)
        grown[1:] |= m[:-1]
        grown[:-1] |= m[1:]
        write_sitk(folder / f"vertebrae_{name}.nii.gz", (m | grown) * 255, spacing=(1.0, 1.0, 2.0))
    items.append(Item("export-labels on TotalSegmentator masks that overlap", "label maps",
                      ["export-labels", _fs(folder), "-o", _fs(d / "out_ts")], "ok"))
    p = write_sitk(d / "verse_float64.nii.gz", full.astype(np.float64), spacing=(1.0, 1.0, 2.0))
    items.append(Item("export-labels on a float64 VerSe mask", "label maps",
                      ["export-labels", _fs(p), "-o", _fs(d / "out_f64")], "ok"))
    # evaluate against another scan's reference; plan on levels the bundle does not hold
    bundle = d / "thoracic_bundle"
    thoracic = _vertebra_array(ids=(15, 16, 17))
    export_labels(write_sitk(d / "thoracic.nii.gz", thoracic, spacing=(1.0, 1.0, 2.0)), bundle)
    far = write_sitk(d / "other_scan.nii.gz", thoracic, spacing=(1.0, 1.0, 2.0), origin=(900.0, 900.0, 900.0))
    items.append(Item("evaluate against another scan's reference", "commands",
                      ["evaluate", _fs(bundle), "--truth", _fs(far)], "refuse", [_fs(far)]))
    items.append(Item("plan --levels L1-L5 on a thoracic bundle", "commands",
                      ["plan", _fs(bundle), "--levels", "L1-L5"], "refuse", [_fs(bundle)]))
    items.append(Item("an unknown option", "commands", ["info", "--no-such-option", _fs(ct)], "refuse",
                      ["--no-such-option"]))
    return items


def _vertebra_array(ids=(20, 21, 22)) -> np.ndarray:
    """Block vertebrae stacked head (high k) to feet, 24 mm apart on a 1×1×2 mm grid."""
    arr = np.zeros((12 * len(ids) + 4, 30, 30), np.uint8)
    k, j, i = np.indices(arr.shape)
    for n, vid in enumerate(ids):
        top = 12 * (len(ids) - n) + 2
        inside = (k >= top - 10) & (k < top) & ((j - 15) ** 2 + (i - 15) ** 2 < 100)
        arr[inside] = vid
    return arr


def _vertebra_map(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_sitk(path, _vertebra_array(), spacing=(1.0, 1.0, 2.0))


# ---- running ------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    category: str
    expect: str
    rc: int | None
    signal: int | None
    stderr: str
    stdout_head: str
    maxrss_mb: float
    verdict: str  # "ok", "refused", "crash", "wrong success", "wrong refusal", "bad message", "wrong geometry"


def _run_worker(items: list[Item], work: Path, tag: str, *, drop_file_privileges: bool) -> list[dict]:
    """Run ``items`` in worker processes (a new one after each crash); one result dict per item."""
    results: list[dict] = []
    start = 0
    env = dict(os.environ, SPINENAV_MEMORY_BUDGET_GB=str(BUDGET_GB), HOME=str(work / "commands" / "home"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]),
               SPINENAV_CORPUS_DROP_DAC="1" if drop_file_privileges else "")
    while start < len(items):
        batch = work / f"{tag}_items_{start}.json"
        out = work / f"{tag}_results_{start}.jsonl"
        batch.write_text(json.dumps([asdict(i) for i in items[start:]]))
        out.write_text("")
        os.chmod(batch, 0o644)
        os.chmod(out, 0o666)
        cmd = [sys.executable, __file__, "--worker", str(batch), str(out)]
        proc = subprocess.run(cmd, env=env, cwd=str(work), capture_output=True, text=True, timeout=1800)
        done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        results += done
        start += len(done)
        if start < len(items):  # the worker died on items[start]
            results.append({"rc": proc.returncode if proc.returncode >= 0 else None,
                             "signal": -proc.returncode if proc.returncode < 0 else None,
                             "stderr": proc.stderr[-2000:], "stdout": "", "maxrss_mb": 0.0, "died": True})
            start += 1
    return results


def _drop_dac_capabilities() -> str | None:
    """Give up root's right to read and search any file (Linux capabilities 1 and 2); None when done,
    else why not. Called by the worker after its imports, so that it can still load its modules."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        header, data = Header(0x20080522, 0), (Data * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            return f"capget failed (errno {ctypes.get_errno()})"
        keep = ~((1 << 1) | (1 << 2)) & 0xFFFFFFFF
        data[0].effective &= keep
        data[0].permitted &= keep
        if libc.capset(ctypes.byref(header), data) != 0:
            return f"capset failed (errno {ctypes.get_errno()})"
    except (OSError, AttributeError) as exc:
        return f"no capability calls here ({exc})"
    return None


def run_corpus(items: list[Item], work: Path) -> list[Outcome]:
    """Run every item; returns one `Outcome` each (verdicts as in the module docstring)."""
    root = os.geteuid() == 0
    plain = [i for i in items if not (i.unprivileged and root)]
    dropped = [i for i in items if i.unprivileged and root]
    results = dict(zip((i.name for i in plain), _run_worker(plain, work, "main", drop_file_privileges=False),
                       strict=True))
    if dropped:
        results.update(zip((i.name for i in dropped),
                           _run_worker(dropped, work, "nodac", drop_file_privileges=True), strict=True))
    return [_judge(i, results[i.name]) for i in items]


def _judge(item: Item, r: dict) -> Outcome:
    from inference.errors import display_path

    rc, sig, err = r.get("rc"), r.get("signal"), r.get("stderr", "")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    verdict = "ok" if rc == 0 else "refused"
    if r.get("skipped"):
        verdict = "skipped"
    elif r.get("died") or sig is not None or rc not in (0, 2):
        verdict = "crash"
    elif rc == 0 and item.expect == "refuse":
        verdict = "wrong success"
    elif rc == 2 and item.expect == "ok":
        verdict = "wrong refusal"
    elif rc == 2:
        named = item.names or [a for a in item.argv if a.startswith("/")]
        if len(lines) != 1 or not lines[0].startswith("error: ") or not any(display_path(n) in lines[0]
                                                                              for n in named):
            verdict = "bad message"
    elif item.geometry is not None:
        try:
            info = json.loads(r.get("stdout", ""))
        except ValueError:
            info = {}
        if not _same_geometry(info, item.geometry):
            verdict = "wrong geometry"
    return Outcome(item.name, item.category, item.expect, rc, sig, err.strip()[-600:], r.get("stdout", "")[:200],
                   float(r.get("maxrss_mb", 0.0)), verdict)


def _same_geometry(info: dict, want: dict) -> bool:
    try:
        if list(info["size"]) != list(want["size"]):
            return False
        for key, tol in (("spacing", 1e-4), ("origin", 1e-3), ("direction", 1e-4)):
            if want.get(key) is not None and not np.allclose(info[key], want[key], atol=tol):
                return False
    except (KeyError, TypeError, ValueError):
        return False
    return True


def summarize(outcomes: list[Outcome]) -> dict:
    by_verdict: dict[str, int] = {}
    for o in outcomes:
        by_verdict[o.verdict] = by_verdict.get(o.verdict, 0) + 1
    by_category: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = by_category.setdefault(o.category, {})
        row[o.verdict] = row.get(o.verdict, 0) + 1
    worst = max(outcomes, key=lambda o: o.maxrss_mb)
    return {"items": len(outcomes), "by_verdict": by_verdict, "by_category": by_category,
            "peak_rss_mb": round(worst.maxrss_mb, 1), "peak_rss_item": worst.name, "budget_gb": BUDGET_GB,
            "failures": [asdict(o) for o in outcomes if o.verdict not in ("ok", "refused", "skipped")]}


def format_summary(s: dict) -> str:
    lines = [f"input corpus: {s['items']} items; " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_verdict"].items())),
             f"peak resident memory of a worker: {s['peak_rss_mb']:.0f} MB (first reached at '{s['peak_rss_item']}'), "
             f"budget {s['budget_gb']:g} GB"]
    for cat, row in s["by_category"].items():
        lines.append(f"  {cat:<14} " + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))
    for f in s["failures"]:
        lines.append(f"  FAILED [{f['verdict']}] {f['name']}: rc={f['rc']} signal={f['signal']} {f['stderr'][-300:]!r}")
    return "\n".join(lines)


# ---- the worker ---------------------------------------------------------------------------------------------
def _worker(items_path: str, results_path: str) -> None:
    import contextlib
    import io

    from inference.cli import main

    items = json.loads(Path(items_path).read_text())
    skip = _drop_dac_capabilities() if os.environ.get("SPINENAV_CORPUS_DROP_DAC") else None
    with open(results_path, "a") as out:
        for item in items:
            if skip:
                out.write(json.dumps({"rc": None, "signal": None, "stderr": skip, "stdout": "", "maxrss_mb": 0.0,
                                      "skipped": True}) + "\n")
                continue
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    rc = main(item["argv"])
                except SystemExit as exc:  # argparse
                    rc = exc.code if isinstance(exc.code, int) else 1
            maxrss_mb = _peak_rss_mb()
            out.write(json.dumps({"rc": rc, "signal": None, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
                                  "maxrss_mb": maxrss_mb}) + "\n")
            out.flush()


def _peak_rss_mb() -> float:
    """This process's peak resident set (MB): VmHWM, which starts afresh at exec (Linux keeps ru_maxrss across
    exec, so a worker started from a big test process would report its parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    work = Path(tempfile.mkdtemp(prefix="spinenav-corpus-"))
    try:
        items = build_corpus(work)
        outcomes = run_corpus(items, work)
        if "--verbose" in sys.argv:
            for o in outcomes:
                print(f"[{o.verdict}] {o.category} | {o.name} | {o.stderr.splitlines()[-1] if o.stderr else ''}")
        print(format_summary(summarize(outcomes)))
    finally:
        _restore_modes(work)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _restore_modes(work: Path) -> None:
    """Make every generated file and folder removable again (some items are unreadable on purpose)."""
    for dirpath, dirnames, _ in os.walk(work):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    for dirpath, _, filenames in os.walk(work):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o644)
                except OSError:
                    pass


if __name__ == "__main__":
    sys.exit(main())
