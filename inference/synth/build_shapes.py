"""Build the vertebra shape library ``assets/shapes/`` (v2) from every real label map at hand.

Run ``python -m inference.synth.build_shapes`` from the repository root; the output is deterministic.
It reads the label maps in the repository (tests/data) and those in ``../shared/data/real/``
(`SHARED`: VerSe'19 masks and the TUM CT follow-up cohort), which must be there to build; the
library it writes is committed, so nothing else needs the shared folder.

Per shape the metadata say where it comes from (source file, licence, patient: two sessions of one
patient share it, keep them on one side of any split), and what it is good for: ``cut`` (the field
of view cuts it: kept, flagged, left out of synthesis), ``compressed`` (under 60 % of its neighbours'
mean volume: a probable compression fracture, for fracture synthesis only), ``subregions`` (a VerSe
subregion map gives its body: ``subregion_body_center``, ``subregion_body_ml``). Fragments under
`MIN_VOLUME_ML` are dropped. ``layouts.json`` keeps each real column (level, centroid, LPS mm) for
the layout statistics and sampler.

Each vertebra (and the sacrum, and the pelvis around it) is resampled with SimpleITK onto a 1 mm
isotropic grid in a *canonical* frame: the origin is the vertebra's centroid and the axes are LPS
rotated so that the local spine axis (from the centroid of the caudal neighbour to the centroid of
the cranial neighbour, in the same scan) points to +z (superior). The rotation is the smallest one
that does this, so anterior stays anterior and left stays left. Geometry always goes through each
file's direction matrix; no axis order is assumed.

Output:
- ``shapes.npz``: ``mask_<n>`` = bit-packed (``np.packbits``) uint8 masks, one per shape, array order
  [k, j, i] = [z, y, x] of the canonical frame (1 mm voxels);
- ``shapes.json``: per shape: level, VerSe id, source file and licence, spacing, size (I, J, K),
  origin (canonical mm of voxel [0, 0, 0]), source centroid (LPS mm), rotation, notes and the
  landmarks the generator needs (vertebral body centre/extent, spinal canal centre/radius,
  transverse process tips), all in canonical mm.

"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .. import registry
from ..assets import assets_dir
from ..io import read_image_file, read_label_map

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "real"
OUT_DIR = assets_dir() / "shapes"
SPACING_MM = 1.0
MIN_VOLUME_ML = 4.0  # smaller masks are fragments (e.g. a 2-voxel "L1"); a whole C1 is ~6-10 ml
COMPRESSED_BELOW = 0.6
"""A vertebra under this fraction of its neighbours' mean volume, or of its level's median body height, is
``compressed`` (a probable fracture); C1, C2 and the sacrum differ from their neighbours by anatomy and are
not tested."""

_VERSE = "CC BY-SA 4.0 (VerSe, Sekuboyina et al. 2021, DOI 10.17605/OSF.IO/NQJYW)"
_TS = "Apache-2.0 (wasserth/TotalSegmentator test files; TotalSegmentator pseudo-label)"
_TPT = "Apache-2.0 (Hendrik-code/TPTBox test sample, VerSe-style labels)"
_TUM = ("no data licence stated (TUM CT follow-up cohort via malekosh/FX-Grader, MIT repository): used for "
        "shapes, source named")
_TUM_FX = ("no data licence stated (TUM in-house sample via malekosh/deep-learning-models-for-the-differentiation-"
           "of-osteoporotic-and-malignant-vertebral-fractures, MIT repository): used for shapes, source named")


@dataclass(frozen=True)
class Source:
    path: str  # relative to the repository root, or to `SHARED` with ``shared``
    key: str  # short name used in shape names
    licence: str
    coarse: bool = False  # 3 mm pseudo-labels: smoothed before resampling
    shared: bool = False
    patient: str = ""  # sessions of one patient share it (default: the key)
    tight_crop: bool = False  # the file is cropped to its labels: touching the grid is not a cut
    levels: tuple[str, ...] = ()  # only these levels (another file of the same session has the rest)
    subregions: str = ""  # VerSe subregion map of the same grid


_TUM_DIR = "spine_label_maps/tum_ctfu/sub-"


def _tum(name: str, levels: tuple[str, ...] = ()) -> Source:
    """A TUM CT follow-up mask, ``name`` as in its file: ``ctfu00001_ses-20140908_split-0_ce-no``."""
    patient, rest = name.split("_ses-")
    split = rest.split("_split-")[1][0] if "_split-" in rest else ""
    key = f"{patient}-{rest[:8]}" + (f"-{split}" if split else "")
    return Source(f"{_TUM_DIR}{name}_seg-vert_msk.nii.gz", key, _TUM, shared=True, patient=patient, levels=levels,
                  subregions=f"{_TUM_DIR}{name}_seg-subreg_msk.nii.gz")


SOURCES = (
    Source("tests/data/verse_labels_only/sub-gl003/sub-gl003_dir-ax_seg-vert_msk.nii.gz", "gl003", _VERSE),
    Source("tests/data/verse_labels_only/sub-gl017/sub-gl017_seg-vert_msk.nii.gz", "gl017", _VERSE),
    Source("tests/data/verse_labels_only/sub-verse004/sub-verse004_seg-vert_msk.nii.gz", "verse004", _VERSE),
    Source("tests/data/verse_labels_only/sub-verse010/sub-verse010_seg-vert_msk.nii.gz", "verse010", _VERSE),
    Source("tests/data/tptbox_ct_lumbar_cutout/sub-ct_seg-vert_label-22_msk.nii.gz", "tptbox", _TPT,
           subregions="tests/data/tptbox_ct_lumbar_cutout/sub-ct_seg-subreg_label-22_msk.nii.gz"),
    Source("tests/data/ts_abdomen_3mm/example_seg_fast_force_split.nii.gz", "totalseg", _TS, coarse=True),
    *(Source(f"spine_label_maps/verse19_more/sub-{k}_seg-vert_msk.nii.gz", k, _VERSE, shared=True,
             tight_crop=k != "verse014")
      for k in ("verse005", "verse006", "verse007", "verse008", "verse009", "verse014")),
    _tum("ctfu00001_ses-20080508_ce-no"),
    _tum("ctfu00001_ses-20140908_split-0_ce-no"),
    _tum("ctfu00001_ses-20140908_split-1_ce-no", levels=("C1", "C2", "C3", "C4", "C5")),  # C6-T1 are in split-0
    _tum("ctfu00002_ses-20080715_ce-art"),
    _tum("ctfu00002_ses-20171103_ce-pv"),
    _tum("ctfu00003_ses-20090127_ce-pv"),
    _tum("ctfu00003_ses-20150424_ce-pv"),
    _tum("ctfu00106_ses-20070122_ce-art"),
    _tum("ctfu00106_ses-20130916_ce-art"),
    Source("spine_label_maps/tum_fracture_sample/sub-sample001_seg-vert_msk.nii.gz", "sample001", _TUM_FX,
           shared=True, subregions="spine_label_maps/tum_fracture_sample/sub-sample001_seg-subreg_msk.nii.gz"),
)
# TotalSegmentator v2 "total" ids of the pelvis parts kept as one "pelvis" shape around the sacrum.
_TS_PELVIS_IDS = (75, 76, 77, 78)  # femur L/R, hip L/R
_TS_SACRUM_IDS = (25, 26)  # sacrum, S1


def _minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation matrix R with R @ a ∥ b (a, b unit 3-vectors)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _centroid_lps(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask).mean(axis=0)
    return np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in kji[::-1])))


def _to_canonical(
    image: sitk.Image,
    mask: np.ndarray,
    center: np.ndarray,
    rot: np.ndarray,
    smooth_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a binary mask into the canonical frame ``q = rot @ (p - center)`` at 1 mm.

    Returns the cropped mask [k, j, i] (bool) and the canonical (x, y, z) mm of its voxel [0, 0, 0].
    """
    src = sitk.GetImageFromArray(mask.astype(np.float32))
    src.CopyInformation(image)
    if smooth_mm > 0:
        src = sitk.SmoothingRecursiveGaussian(src, smooth_mm)
    # canonical bounding box of the mask's voxel centres (plus a margin for the voxel size)
    kji = np.argwhere(mask)
    corners = np.array(
        [
            image.TransformIndexToPhysicalPoint([int(c) for c in p[::-1]])
            for p in _box_corners(kji.min(axis=0), kji.max(axis=0))
        ]
    )
    q = (corners - center) @ rot.T
    margin = max(image.GetSpacing()) + 2 * SPACING_MM
    lo = np.floor(q.min(axis=0) - margin)
    hi = np.ceil(q.max(axis=0) + margin)
    size = [int(n) for n in (hi - lo) / SPACING_MM + 1]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((SPACING_MM,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(rot.T.flatten()))  # output (canonical) point q → source point center + rot^T q
    tx.SetTranslation(tuple(float(v) for v in center))
    out = sitk.Resample(src, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out) > 0.5
    arr = _largest_component(arr)
    nz = np.argwhere(arr)
    a, b = nz.min(axis=0), nz.max(axis=0) + 1
    arr = arr[a[0] : b[0], a[1] : b[1], a[2] : b[2]]
    origin = lo + a[::-1] * SPACING_MM
    return arr, origin


def _box_corners(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    return [np.array([k, j, i]) for k in (a[0], b[0]) for j in (a[1], b[1]) for i in (a[2], b[2])]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def landmarks(mask: np.ndarray, origin: np.ndarray) -> dict[str, Any]:
    """Canonical-frame landmarks of one vertebra mask (1 mm voxels, [k, j, i] = [z, y, x]).

    The spinal canal is the hole the vertebral arch closes in axial slices; the body is what lies
    anterior (−y in LPS) of the canal; the transverse process tips are the most lateral points behind
    the canal's front. All values are canonical mm (x, y, z).
    """
    closed = np.stack([ndi.binary_closing(s, iterations=2) for s in mask])
    hole = np.stack([ndi.binary_fill_holes(s) for s in closed]) & ~closed
    zz, yy, xx = np.nonzero(mask)
    pts = np.c_[xx, yy, zz] * SPACING_MM + origin
    hole = _midline_component(hole, origin, float(np.median(pts[:, 0])))
    out: dict[str, Any] = {}
    if hole.sum() >= 20:
        hz, hy, hx = np.nonzero(hole)
        hp = np.c_[hx, hy, hz] * SPACING_MM + origin
        canal_c = hp.mean(axis=0)
        canal_r = float(np.sqrt(len(hp) / max(np.ptp(hp[:, 2]) + 1, 1) / np.pi))
        front = float(np.percentile(hp[:, 1], 5))
    else:  # open arch (or too coarse): put the canal 60 % of the way back
        y0, y1 = np.percentile(pts[:, 1], [2, 98])
        canal_c = np.array([np.median(pts[:, 0]), y0 + 0.6 * (y1 - y0), np.median(pts[:, 2])])
        canal_r, front = 6.0, float(canal_c[1] - 6.0)
    out["canal_center"] = canal_c.round(2).tolist()
    out["canal_radius"] = round(canal_r, 2)
    body = pts[pts[:, 1] < front - 1.0]
    if len(body) < 50:
        body = pts
    lo, hi = np.percentile(body, 2, axis=0), np.percentile(body, 98, axis=0)
    out["body_center"] = ((lo + hi) / 2).round(2).tolist()
    out["body_half_size"] = ((hi - lo) / 2).round(2).tolist()  # (LR, AP, SI) half extents
    back = pts[pts[:, 1] >= front]
    if len(back) == 0:
        back = pts
    out["tp_left"] = back[np.argmax(back[:, 0])].round(2).tolist()  # +x = patient left
    out["tp_right"] = back[np.argmin(back[:, 0])].round(2).tolist()
    out["volume_ml"] = round(float(mask.sum()) * SPACING_MM**3 / 1000.0, 2)
    return out


def _midline_component(hole: np.ndarray, origin: np.ndarray, mid_x: float) -> np.ndarray:
    """The largest hole near the midline and not in front: the canal, not a transverse foramen (C1–C7)."""
    lab, n = ndi.label(hole)
    best, best_size = np.zeros_like(hole), 0
    for c in range(1, n + 1):
        comp = lab == c
        size = int(comp.sum())
        _, yy, xx = np.nonzero(comp)
        x = float(xx.mean()) * SPACING_MM + origin[0]
        y = float(yy.mean()) * SPACING_MM + origin[1]
        # the canal lies behind the body: the vertebra's centroid (canonical 0) is near its front wall
        if abs(x - mid_x) < 8.0 and y > -6.0 and size > best_size:
            best, best_size = comp, size
    return best


def build(root: Path = ROOT, shared: Path = SHARED, out_dir: Path = OUT_DIR) -> dict[str, Any]:
    """Build ``shapes.npz``, ``shapes.json`` and ``layouts.json`` in ``out_dir``; returns the shapes' JSON."""
    missing = [s.path for s in SOURCES if s.shared and not (shared / s.path).is_file()]
    if missing:
        raise FileNotFoundError(f"{shared / missing[0]} is not here: the shape library is built from the real label "
                                "maps in ../shared/data/real (the built library in assets/shapes is committed)")
    shapes: list[dict[str, Any]] = []
    layouts: list[dict[str, Any]] = []
    for src in SOURCES:
        path = (shared if src.shared else root) / src.path
        if src.key == "totalseg":
            vol = read_image_file(path, what="label map")
            raw = np.asarray(vol.array, dtype=np.int64)
            lab = np.zeros(raw.shape, dtype=np.uint8)
            for ts_id in range(27, 51):
                lab[raw == ts_id] = registry.from_totalseg_total(ts_id) or 0
            lab[np.isin(raw, _TS_SACRUM_IDS)] = 26
            pelvis = np.isin(raw, _TS_PELVIS_IDS)
        else:
            vol = read_label_map(path, convention="verse")
            lab, pelvis = np.asarray(vol.array, dtype=np.uint8), None
        sub = None
        if src.subregions:
            sub_vol = read_image_file((shared if src.shared else root) / src.subregions, what="subregion map")
            if not sub_vol.same_grid(vol):
                raise ValueError(f"{src.subregions} is not on the grid of {src.path}")
            sub = np.isin(np.asarray(sub_vol.array), (49, 50))  # corpus border + corpus: the vertebral body
        image = vol.to_sitk()
        voxel_ml = float(np.prod(vol.spacing)) / 1000.0
        ids = registry.sort_ids(int(i) for i in np.unique(lab) if i)
        cents = {i: _centroid_lps(image, lab == i) for i in ids}
        volumes = {i: float((lab == i).sum()) * voxel_ml for i in ids}
        order = [registry.by_id(i).order for i in ids]
        layouts.append({"source": src.key, "patient": src.patient or src.key, "file": src.path,
                        "levels": [{"level": registry.name_of(i), "centroid_lps": cents[i].round(2).tolist(),
                                    "volume_ml": round(volumes[i], 2)} for i in ids]})
        for n, vid in enumerate(ids):
            if src.levels and registry.name_of(vid) not in src.levels:
                continue  # another file of the same session holds this level
            if volumes[vid] < MIN_VOLUME_ML:
                continue  # a fragment
            m = lab == vid
            touches = any(m.take(0, axis=ax).any() or m.take(-1, axis=ax).any() for ax in range(3))
            # neighbours in the same scan; an order gap of 2 skips the T13/L6 slots of the registry
            up = ids[n - 1] if n > 0 and order[n] - order[n - 1] <= 2 else None
            down = ids[n + 1] if n + 1 < len(ids) and order[n + 1] - order[n] <= 2 else None
            a = cents[up] if up else cents[vid]
            b = cents[down] if down else cents[vid]
            axis = (a - b) / np.linalg.norm(a - b)
            rot = _minimal_rotation(axis, np.array([0.0, 0.0, 1.0]))
            smooth = 1.0 if src.coarse else 0.0
            mask, origin = _to_canonical(image, m, cents[vid], rot, smooth)
            rec: dict[str, Any] = {
                "level": registry.name_of(vid),
                "id": vid,
                "source": src.path if not src.shared else f"../shared/data/real/{src.path}",
                "source_key": src.key,
                "patient": src.patient or src.key,
                "licence": src.licence,
                "coarse": src.coarse,
                "cut": bool(touches and not src.tight_crop),
                "compressed": _compressed(vid, up, down, volumes),
                "source_volume_ml": round(volumes[vid], 2),
                "source_spacing": [round(s, 4) for s in vol.spacing],
                "centroid_lps": cents[vid].round(3).tolist(),
                "rotation": rot.round(6).tolist(),
                "derived": None,
                "subregions": sub is not None,
                "mask": mask,
                "origin": origin,
            }
            if sub is not None and (body := m & sub).any():
                rec["subregion_body_ml"] = round(float(body.sum()) * voxel_ml, 2)
                rec["subregion_body_center"] = (rot @ (_centroid_lps(image, body) - cents[vid])).round(2).tolist()
            if down is not None:  # vector to the caudal neighbour's centroid, canonical frame
                rec["next_offset"] = (rot @ (cents[down] - cents[vid])).round(2).tolist()
            shapes.append(rec)
            if vid == 26 and pelvis is not None:
                pmask, porigin = _to_canonical(image, pelvis, cents[vid], rot, smooth)
                shapes.append(
                    {
                        **rec,
                        "level": "pelvis",
                        "id": 0,
                        "mask": pmask,
                        "origin": porigin,
                        "derived": "hip bones and femora (TotalSegmentator ids 75-78) in the sacrum's frame",
                    }
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "layouts.json").write_text(json.dumps(
        {"description": "Real columns of the label maps the library is built from: per level the mask centroid "
                        "(LPS mm of the source file) and volume; for layout statistics and sampling.",
         "columns": layouts}, indent=1) + "\n")
    return _save(shapes, out_dir)


def _flag_short_bodies(meta: list[dict[str, Any]]) -> None:
    """Also ``compressed``: a body under `COMPRESSED_BELOW` of its level's median body height (a wedge or
    compression fracture loses height before volume). C1, C2 and the sacrum are not tested."""
    heights: dict[str, list[float]] = {}
    for s in meta:
        if "body_half_size" in s and not s["cut"]:
            heights.setdefault(s["level"], []).append(2.0 * s["body_half_size"][2])
    for s in meta:
        if s["level"] in ("C1", "C2", "S1", "pelvis") or s["cut"] or "body_half_size" not in s:
            continue
        if 2.0 * s["body_half_size"][2] < COMPRESSED_BELOW * float(np.median(heights[s["level"]])):
            s["compressed"] = True


def _compressed(vid: int, up: int | None, down: int | None, volumes: dict[int, float]) -> bool:
    """Under `COMPRESSED_BELOW` of the mean volume of its neighbours (C1, C2, sacrum: never)."""
    special = {registry.id_of(n) for n in ("C1", "C2", "S1")}
    if vid in special:
        return False
    near = [volumes[n] for n in (up, down) if n is not None and n not in special]
    return bool(near) and volumes[vid] < COMPRESSED_BELOW * float(np.mean(near))


def _save(shapes: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    shapes.sort(key=lambda s: (registry.by_id(s["id"]).order if s["id"] else 99, s["source_key"]))
    arrays, meta = {}, []
    for n, s in enumerate(shapes):
        mask = s.pop("mask")
        origin = s.pop("origin")
        arrays[f"mask_{n:03d}"] = np.packbits(mask.ravel())
        s.update(
            {
                "index": n,
                "name": f"{s['level']}@{s['source_key']}",
                "spacing": [SPACING_MM] * 3,
                "size": list(mask.shape[::-1]),
                "origin": np.round(origin, 3).tolist(),
            }
        )
        if s["level"] != "pelvis":
            s.update(landmarks(mask, origin))
        else:
            s["volume_ml"] = round(float(mask.sum()) / 1000.0, 2)
        meta.append(s)
    _flag_short_bodies(meta)
    doc = {
        "description": "Vertebra masks in canonical frames (origin = centroid, +z = local spine axis, LPS mm, "
        "1 mm voxels, [k, j, i] = [z, y, x]); bit-packed in shapes.npz as mask_<index>.",
        "coordinate_system": "LPS (canonical, per shape)",
        "shapes": meta,
    }
    # np.savez_compressed writes zip entries with a fixed date, so the file is reproducible
    np.savez_compressed(out_dir / "shapes.npz", **arrays)
    (out_dir / "shapes.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("spinenav.build_shapes").info("%d shapes → %s", len(build()["shapes"]), OUT_DIR)
