"""Per-vertebra segmentation and lesion suspicion (DESIGN §1: segment/ and lesion/ stages).

`segment_vertebrae` takes the labeled centers of the localization stage and

1. resamples the CT once onto the 2 mm working grid, restricted to the box the crops need;
2. cuts one crop per vertebra (`inference.models.segmenter.PATCH`) with its center channels and
   runs the network on batches of crops (memory is bounded by the batch, not the scan);
3. pastes each vertebra's mask probability back onto the CT grid (linear interpolation inside the
   crop's footprint only); a voxel goes to the vertebra with the highest probability above 0.5;
   small islands are dropped and holes a mask encloses in sagittal or coronal slices (a low-density
   body) are closed (`_drop_islands`, `_fill_hollows`);
4. scores lesion suspicion per vertebra from the lesion channels inside its mask.

Lesion scores flag regions for a human to look at; they are not a diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from .measure import SLAB_VOXELS, union_box
from .models.lesion import LesionNet, lesion_input
from .models.segmenter import (
    INPUT_SPACING_MM,
    LESION_CHANNELS,
    LESION_TYPES,
    PATCH,
    RIB_CHANNEL,
    SegmenterNet,
    center_channels,
    crop,
    crop_start,
    patch_of,
)
from .precision import autocast
from .preprocess import AIR_HU, WorkingGrid, normalize_hu, resample_ct, working_grid
from .progress import CancelToken, ProgressCallback, check_cancel, report
from .ribs import rib_zone_ml
from .volume import Volume

MASK_THRESHOLD = 0.5
ISLAND_FRACTION = 0.15
"""Pieces of a vertebra's mask smaller than this share of its largest piece are dropped (`_drop_islands`)."""

LESION_FLAG = 0.5
"""Lesion scores and the lesion map are scaled so that this value is the flag threshold of every type.

The network's raw lesion probabilities are not calibrated (its loss weighs rare lesion voxels up);
each type's threshold comes with the weights (manifest ``lesion_thresholds``, set on synthetic
training cases for a 5 % false-alarm rate) and the raw value is scaled by ``LESION_FLAG / threshold``
(capped at 1). A type whose threshold is None is not scored (its head did not beat chance on
held-out synthetic CT). Without thresholds the raw probabilities are used."""
LESION_TOP_FRACTION = 0.05
"""A vertebra's score for a lesion type is the mean of its top 5% voxel probabilities (≥ 8 voxels)."""
SOFT_TISSUE_HU = 40.0
"""Target median of soft tissue for the test-time intensity adaptation (synthetic training median)."""


@dataclass
class VertebraMask:
    """Segmentation facts of one vertebra (before pasting)."""

    id: int
    voxels_2mm: int
    lesion_scores: dict[str, float] = field(default_factory=dict)
    rib_ml: float | None = None
    """The rib cue (`inference.ribs.rib_zone_ml`); None where its zone is mostly outside the crop."""

    @property
    def lesion_score(self) -> float:
        return max(self.lesion_scores.values()) if self.lesion_scores else 0.0

    @property
    def lesion_type(self) -> str | None:
        if not self.lesion_scores or self.lesion_score < LESION_FLAG:
            return None
        return max(self.lesion_scores, key=self.lesion_scores.__getitem__)


@dataclass
class SegmentationOutput:
    labels: Volume
    """VerSe ids on the CT grid (uint8)."""
    lesions: Volume
    """Lesion suspicion on the CT grid: max over types of the lesion probability, inside vertebra masks (float16)."""
    masks: dict[int, VertebraMask]
    intensity_shift_hu: float = 0.0
    box: tuple[slice, slice, slice] | None = None
    """The CT box (k, j, i) that holds every mask (background and no lesion outside it); None: the
    whole grid. Whole-map passes (renaming, QA) read this box only: on a big scan it is a fraction."""

    def labels_in_box(self) -> Volume:
        """``labels`` cut to `box` (same spacing and frame; ids and voxel counts unchanged)."""
        return self.labels if self.box is None else self.labels.crop(self.box)


def crop_box(centers_kji: np.ndarray, grid: WorkingGrid, shapes=None) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (k, j, i) on ``grid`` of the union of all crops (may reach outside the grid);
    ``shapes`` (one crop shape per center) defaults to `PATCH` for all."""
    half = (np.array([PATCH] * len(centers_kji) if shapes is None else shapes) - 1) / 2.0
    lo = np.floor((centers_kji - half).min(axis=0)).astype(int) - 1
    hi = np.ceil((centers_kji + half).max(axis=0)).astype(int) + 2
    return lo, hi


def segment_vertebrae(
    model: SegmenterNet,
    ct: Volume,
    vertebrae: Sequence[tuple[int, np.ndarray]],
    device: torch.device,
    *,
    batch_size: int = 4,
    adapt_intensity: bool = False,
    lesion_thresholds: dict[str, float] | None = None,
    lesion_model: LesionNet | None = None,
    patches: Sequence[tuple[int, int, int]] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    precision: str = "fp32",
    mirror: bool = False,
) -> SegmentationOutput:
    """Masks and lesion suspicion for ``vertebrae`` = [(VerSe id, center LPS mm), …] of ``ct``.

    ``adapt_intensity`` shifts the scan's HU so that its soft-tissue median matches the training
    data (test-time intensity-statistics adaptation); off by default. ``lesion_thresholds`` (type →
    raw probability that flags it) scale the lesion outputs (see `LESION_FLAG`).

    With ``lesion_model`` (`inference.models.lesion`), each vertebra's lesion scores come from that
    classifier (``lesion_thresholds`` are then its thresholds) and the heatmap inside the vertebra is
    the segmenter's lesion channel of each type, scaled to peak at that type's score: the segmenter
    shows where, the classifier how suspicious. Without it, both come from the segmenter's channels.

    ``precision``: fp32, or fp16 / bf16 autocast on CUDA (`inference.precision`); probabilities are
    taken in float32 either way. ``mirror``: also run each crop left-right mirrored (a training
    augmentation) and average the two passes' probabilities (test-time augmentation; twice the network
    time).
    """
    thr = {t: (lesion_thresholds or {}).get(t, LESION_FLAG) for t in LESION_TYPES}
    # a type the weights disable (threshold None: not better than chance on held-out synthetic CT) scores 0
    scale = np.array([0.0 if thr[t] is None else LESION_FLAG / float(thr[t]) for t in LESION_TYPES], np.float32)
    if lesion_model is not None:
        lesion_model = lesion_model.to(device).eval()
    tell = report(progress)
    k, j, i = ct.array.shape
    labels = np.zeros((k, j, i), np.uint8)
    best = np.zeros((k, j, i), np.uint8)  # winning probability × 255
    lesion_map = np.zeros((k, j, i), np.float16)  # probabilities need no more; halves the biggest map
    masks: dict[int, VertebraMask] = {}
    if not vertebrae:
        return SegmentationOutput(_on_ct(ct, labels), _on_ct(ct, lesion_map), masks)

    full = working_grid(ct, INPUT_SPACING_MM)
    centers_kji = np.array([full.lps_to_index(c)[::-1] for _, c in vertebrae])
    shapes = [patch_of(vid) for vid, _ in vertebrae] if patches is None else list(patches)
    lo, hi = crop_box(centers_kji, full, shapes)
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, np.array(full.size[::-1]))
    size = tuple(int(v) for v in (hi_c - lo_c)[::-1])
    sub = WorkingGrid(tuple(full.index_to_lps(lo_c[::-1]).tolist()), full.spacing, size)
    tell(0.02, "resampling for segmentation")
    hu = resample_ct(ct, sub, cancel=cancel, device=device)
    shift = 0.0
    if adapt_intensity:
        soft = hu[(hu > -150) & (hu < 150)]
        if soft.size > 1000:
            shift = SOFT_TISSUE_HU - float(np.median(soft))
            hu = np.where(hu > AIR_HU + 1, hu + shift, hu)
    local = np.array([sub.lps_to_index(c)[::-1] for _, c in vertebrae])  # (k, j, i) on `sub`

    groups: dict[tuple[int, int, int], list[int]] = {}  # crops of one shape batch together
    for n, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(n)
    batches = [g[b0 : b0 + batch_size] for _, g in sorted(groups.items()) for b0 in range(0, len(g), batch_size)]
    boxes: dict[int, tuple[slice, slice, slice] | None] = {}
    done = 0
    for idx in batches:
        check_cancel(cancel)
        starts, xs = [], []
        for n in idx:
            shape = shapes[n]
            start = crop_start(local[n], shape)
            x_hu = crop(hu, start, AIR_HU, shape)
            chans = center_channels(local - start, n, shape=shape)
            xs.append(np.concatenate([normalize_hu(x_hu)[None], chans]))
            starts.append(start)
        x = torch.from_numpy(np.stack(xs)).to(device)
        with torch.inference_mode():
            with autocast(device, precision):
                out = model(x)
            prob = torch.sigmoid(out.float())
            if mirror:  # the left-right mirrored crops too (a training augmentation), flipped back and averaged
                with autocast(device, precision):
                    out = model(x.flip(-1))
                prob = 0.5 * (prob + torch.sigmoid(out.float()).flip(-1))
            prob = prob.cpu().numpy()
        inside_all = prob[:, 0] > MASK_THRESHOLD
        if lesion_model is None:
            prob[:, LESION_CHANNELS] = np.minimum(prob[:, LESION_CHANNELS] * scale[None, :, None, None, None], 1.0)
            per_vertebra = [_channel_scores(p, inside) for p, inside in zip(prob, inside_all, strict=True)]
        else:
            xl = np.stack([lesion_input(xx[0], inside) for xx, inside in zip(xs, inside_all, strict=True)])
            with torch.inference_mode():
                with autocast(device, precision):
                    logits = lesion_model(torch.from_numpy(xl).to(device))
                raw = torch.sigmoid(logits.float()).cpu().numpy()
            per_vertebra = []
            for p, inside, r in zip(prob, inside_all, raw, strict=True):
                s = np.minimum(r * scale, 1.0)
                per_vertebra.append({name: float(s[t]) for t, name in enumerate(LESION_TYPES)})
                p[LESION_CHANNELS] = _heat_scaled(p[LESION_CHANNELS], inside, s)
        for n, start, p, inside, scores in zip(idx, starts, prob, inside_all, per_vertebra, strict=True):
            vid = int(vertebrae[n][0])
            rib_ml = rib_zone_ml(p[RIB_CHANNEL], local[n] - start, sub.spacing, (-start, np.array(hu.shape) - start),
                                 own=inside)
            masks[vid] = VertebraMask(vid, int(inside.sum()), scores, rib_ml)
            origin = np.asarray(sub.origin) + sub.spacing * start[::-1]
            boxes[vid] = _paste(ct, origin, sub.spacing, p[0], p[LESION_CHANNELS].max(axis=0), vid, labels, best,
                                lesion_map)
        done += len(idx)
        tell(0.05 + 0.9 * min(1.0, done / len(vertebrae)), f"segmented {done}/{len(vertebrae)}")
    _drop_islands(labels, boxes)
    _fill_hollows(labels, boxes, ct.superior_array_axis)
    box = union_box(b for b in boxes.values() if b is not None) or (slice(0, 0),) * 3
    lesion_map[box][labels[box] == 0] = 0.0  # outside the box nothing was pasted
    return SegmentationOutput(_on_ct(ct, labels), _on_ct(ct, lesion_map), masks, shift, box)


def _channel_scores(p: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Per type, the mean of the top `LESION_TOP_FRACTION` of the segmenter's lesion channel in the mask."""
    scores = {}
    for t, name in enumerate(LESION_TYPES):
        vals = p[1 + t][inside]
        if vals.size:
            top = max(8, int(LESION_TOP_FRACTION * vals.size))
            scores[name] = float(np.sort(vals)[-top:].mean())
        else:
            scores[name] = 0.0
    return scores


def _heat_scaled(heat: np.ndarray, inside: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The segmenter's lesion channels [3, k, j, i], each scaled so that its peak in the mask is that
    type's classifier score (a type scored 0 vanishes from the map)."""
    out = np.zeros_like(heat)
    for t in range(len(heat)):
        peak = float(heat[t][inside].max()) if inside.any() else 0.0
        if peak > 0 and scores[t] > 0:
            out[t] = np.minimum(heat[t] / peak, 1.0) * scores[t]
    return out


def _drop_islands(labels: np.ndarray, boxes: dict[int, tuple[slice, slice, slice] | None]) -> None:
    """In place: set to background the pieces of each vertebra's mask smaller than `ISLAND_FRACTION`
    of its largest piece (stray voxels in a neighbour, a vessel or the sacrum's edge); a vertebra cut
    in two by a thin slab keeps both halves. ``boxes``: VerSe id → the CT box its crop was pasted
    into (`_paste`), so each mask is searched there only, not over the whole scan."""
    for vid, box in boxes.items():
        if box is None:
            continue
        sub = labels[box]
        pieces, n = ndimage.label(sub == vid)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        small = np.flatnonzero((sizes > 0) & (sizes < ISLAND_FRACTION * sizes.max()))
        sub[np.isin(pieces, small)] = 0


def _fill_hollows(labels: np.ndarray, boxes: dict[int, tuple[slice, slice, slice] | None], superior_axis: int) -> None:
    """In place: give each vertebra the unlabelled voxels its mask encloses in a sagittal or coronal
    slice (array slices along the two axes other than ``superior_axis``).

    A body of low-density cancellous bone (osteoporosis, a lytic core) comes out of the network as a
    shell around a hole: closed by endplates above and below and cortex in front, behind and at the
    sides, the hole is enclosed in those slices. The spinal canal is not: it runs through the
    vertebra from top to bottom, so it is open in every slice that holds the S–I direction (in an
    axial slice a closed ring encloses it, which is why axial slices are left alone). Voxels of
    another vertebra are never taken."""
    for vid, box in boxes.items():
        if box is None:
            continue
        in_box = labels[box] == vid
        found = ndimage.find_objects(in_box.view(np.uint8))
        if not found or found[0] is None:
            continue
        # the mask's own bounding box: a hole enclosed in a slice lies within it
        sub, own = labels[box][found[0]], in_box[found[0]]
        enclosed = np.zeros_like(own)
        for axis in range(3):
            if axis == superior_axis:
                continue
            # background reaches the border only within a slice; a padded empty slice at each end keeps
            # the first and last slices from counting as border
            in_slice = np.expand_dims(ndimage.generate_binary_structure(2, 1), axis)
            pad = [(1, 1) if a == axis else (0, 0) for a in range(3)]
            filled = ndimage.binary_fill_holes(np.pad(own, pad), structure=in_slice)
            enclosed |= filled[tuple(slice(1, -1) if a == axis else slice(None) for a in range(3))]
        sub[enclosed & (sub == 0)] = vid


def _on_ct(ct: Volume, array: np.ndarray) -> Volume:
    """A map on the CT's grid without the CT's metadata (it is not a file of its own yet)."""
    return Volume(array, ct.spacing, ct.origin, ct.direction.copy(), {"label_convention": "verse"})


def _paste(ct: Volume, origin_lps: np.ndarray, spacing: float, mask_p: np.ndarray, lesion_p: np.ndarray, vid: int,
           labels: np.ndarray, best: np.ndarray, lesion_map: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Resample one crop's probabilities onto the CT voxels it covers; keep the most probable vertebra.
    Returns the CT box (k, j, i) the crop covers, the only place ``vid`` can be written; None if outside."""
    nk, nj, ni = mask_p.shape
    corners = np.array([[a, b, c] for a in (0, ni - 1) for b in (0, nj - 1) for c in (0, nk - 1)], float)
    ijk = ct.lps_to_index(origin_lps + spacing * corners)
    shape_ijk = np.array(ct.array.shape[::-1])
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, shape_ijk)
    if np.any(hi <= lo):
        return None
    ref = sitk.Image([int(v) for v in hi - lo], sitk.sitkFloat32)
    ref.SetSpacing([float(s) for s in ct.spacing])
    ref.SetDirection([float(v) for v in np.asarray(ct.direction).ravel()])
    ref.SetOrigin([float(v) for v in ct.index_to_lps(lo[None].astype(float))[0]])
    probs = []
    for arr in (mask_p, lesion_p):
        img = sitk.GetImageFromArray(arr.astype(np.float32))
        img.SetOrigin([float(v) for v in origin_lps])
        img.SetSpacing([float(spacing)] * 3)
        probs.append(sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0)))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1], strict=True))
    q = np.rint(np.clip(probs[0], 0, 1) * 255).astype(np.uint8)
    win = (probs[0] > MASK_THRESHOLD) & (q > best[box])
    labels[box][win] = vid
    best[box][win] = q[win]
    lesion_map[box][win] = probs[1][win]
    return box


def clear_lesions(seg: SegmentationOutput, ids) -> SegmentationOutput:
    """``seg`` with no lesion scores and no lesion suspicion in the map for the vertebrae ``ids`` (the
    map is changed in place, slab by slab; the returned output shares it)."""
    ids = sorted(set(ids) & set(seg.masks))
    if not ids:
        return seg
    box = seg.box if seg.box is not None else (slice(None),) * 3
    labels, lesions = seg.labels.array[box], seg.lesions.array[box]
    step = max(1, SLAB_VOXELS // max(1, labels[0].size))
    for k0 in range(0, labels.shape[0], step):
        sl = slice(k0, k0 + step)
        lesions[sl][np.isin(labels[sl], ids)] = 0.0
    masks = {a: VertebraMask(a, m.voxels_2mm, {} if a in ids else dict(m.lesion_scores), m.rib_ml)
             for a, m in seg.masks.items()}
    return SegmentationOutput(seg.labels, seg.lesions, masks, seg.intensity_shift_hu, seg.box)


def relabel(seg: SegmentationOutput, mapping: dict[int, int]) -> SegmentationOutput:
    """The same segmentation with each label ``a`` renamed ``mapping[a]``; labels mapped to 0 or not in
    ``mapping`` are removed, and their lesion suspicion is cleared in ``seg.lesions`` itself (the
    returned output shares that map). Used when masks were made under provisional tags before the
    column was named. Works slab by slab on the CT-size maps."""
    lut = np.zeros(256, np.uint8)
    for a, b in mapping.items():
        lut[int(a)] = int(b)
    box = seg.box if seg.box is not None else (slice(None),) * 3
    labels = seg.labels.array[box]
    lesions = seg.lesions.array[box]
    full = np.zeros_like(seg.labels.array)  # outside the box: background, as it was
    out = full[box]
    step = max(1, SLAB_VOXELS // max(1, labels[0].size))
    for k0 in range(0, labels.shape[0], step):
        sl = slice(k0, k0 + step)
        out[sl] = lut[labels[sl]]
        lesions[sl][out[sl] == 0] = 0.0
    masks = {int(lut[a]): VertebraMask(int(lut[a]), m.voxels_2mm, dict(m.lesion_scores), m.rib_ml)
             for a, m in seg.masks.items() if lut[a]}
    return SegmentationOutput(seg.labels.with_array(full), seg.lesions, masks, seg.intensity_shift_hu, seg.box)
