"""The analysis pipeline object (DESIGN §1): loads the models once, runs the stages in order.

The CLI (``spinenav analyze``), the GUI's worker thread and the tests all use `Pipeline`. Stages:
working grid → localizer network (centers + level votes) → joint label decoding → per-vertebra
segmentation with lesion suspicion (`inference.segment`) → QA flags.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from . import registry
from .case import ANALYSIS_SOURCE, Case, Vertebra
from .column import (
    StraightSpine,
    candidates_along_column,
    missed_vertebrae,
    off_body_candidates,
    rib_sides,
    top_sliver,
    with_sacrum_from_bone,
    with_skipped_cervical,
)
from .column.rib_pairs import RibSides
from .config import SHIPPED, RunConfig
from .errors import InputError, WeightsError
from .label import LEVELS, bone_rib_likelihoods, decode, rib_likelihoods, shown_confidence
from .localize import (
    MIN_DISTANCE_MM,
    Candidate,
    LocalizerOutput,
    candidate_placed_at,
    drop_off_column,
    find_candidates,
    order_head_to_foot,
    run_localizer,
)
from .measure import CUT_AREA_MM2, field_of_view_cut_areas, union_box, vertebra_centers, vertebra_voxel_counts
from .models.lesion import NOT_SCORED, LesionNet
from .models.localizer import LEVEL_IDS, LocalizerNet
from .models.segmenter import INPUT_SPACING_MM as SEGMENTER_SPACING_MM
from .models.segmenter import SACRUM_IDS, SegmenterNet, patch_of
from .models.weights import load_state
from .planning.geometry import body_centers_from_shape
from .precision import resolve_precision
from .progress import CancelToken, ProgressCallback, check_cancel, report, sub_progress
from .qa import intensity_notes, mask_flags, metal_flags
from .segment import LESION_FLAG, SegmentationOutput, VertebraMask, clear_lesions, relabel, segment_vertebrae
from .volume import Volume

MIN_ANALYSIS_EXTENT_MM = 20.0
"""A CT thinner than this along any axis cannot show a vertebra (a vertebral body is ~25 mm tall)."""
MAX_ANALYSIS_SPACING_MM = 10.0
"""Voxels coarser than this along any axis cannot show a vertebra's shape."""
ANALYSIS_BYTES_BASE, ANALYSIS_BYTES_PER_VOXEL = 0.8e9, 14.0
"""Peak memory of an analysis ≈ base + per CT voxel, fitted to docs/benchmarks.md (2 CPU threads): 512×512×141
1.29 GB, ×400 2.1 GB, ×800 3.47 GB; checked against the memory budget before any work."""

RECORDED_DECODING = ("emission_temperature", "posterior_temperature", "decoding_from")
"""Decoding settings written into a case's run configuration as they were resolved (`decoding_settings`)."""

LOCALIZER = "localizer"
SEGMENTER = "segmenter"
LESION = "lesion"
UNCERTAIN_BELOW = 0.7
"""A label whose posterior probability is below this is flagged ``label_uncertain``."""
GAP_ROUNDS = 2
"""Rounds of `Pipeline.fill_gaps`: a second finds a vertebra still missing where two were skipped in a row."""
BORDER_MM = 8.0
"""A center closer than this to the scan's edge is flagged ``partial_at_border``."""
SHORT_SCAN_MM = 60.0
"""A field of view shorter than this (cranio-caudal) holds less than two lumbar vertebrae; when nothing
is found in one, the note says the scan is too short rather than asking whether it shows the spine."""
def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA, then Apple MPS, then CPU; otherwise the named device (must be available)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


class Pipeline:
    """Loads the models once; `analyze` runs every stage on one CT.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "mps"}
    weights_root : path, optional
        Folder holding ``<model>/manifest.json`` (default: the installed ``assets/weights``).
    localizer, segmenter, lesion : nn.Module, optional
        Ready models (tests pass small untrained ones); skip loading from disk. The lesion classifier
        is loaded with a segmenter loaded from disk; beside an in-memory segmenter only ``lesion``
        is used (without it, lesion scores come from the segmenter's own lesion channels).
    segment : bool
        Run the segmentation stage (masks, lesions); False gives centers and labels only.
    config : RunConfig
        The analysis' settings (`inference.config`); recorded in every case it returns.
    precision : {"auto", "fp32", "fp16", "bf16"}
        Of the network passes (`inference.precision`): "auto" is float16 autocast on CUDA and
        float32 elsewhere; half precision needs CUDA.
    """

    def __init__(
        self,
        device: str = "auto",
        weights_root: Path | None = None,
        localizer: LocalizerNet | None = None,
        segmenter: SegmenterNet | None = None,
        lesion: LesionNet | None = None,
        *,
        segment: bool = True,
        config: RunConfig = SHIPPED,
        precision: str = "auto",
    ) -> None:
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.models = []
        self._manifests: dict[str, dict] = {}
        self.lesion_thresholds: dict[str, float] | None = None
        if localizer is None:
            localizer = self._load(LOCALIZER, weights_root, lambda a: LocalizerNet(
                widths=tuple(a["widths"]), use_descriptor=bool(a["use_descriptor"])))
        else:
            self.models.append({"name": LOCALIZER, "version": "in-memory", "sha256": None})
        self.localizer = localizer.eval().to(self.device)
        self.segmenter = None
        self.lesion: LesionNet | None = None
        if segment:
            if segmenter is None:
                segmenter = self._load(SEGMENTER, weights_root, SegmenterNet.from_architecture)
                lesion = self._load(LESION, weights_root, LesionNet.from_architecture)
                self.lesion_thresholds = self._manifests[LESION].get("lesion_thresholds")
            else:
                self.models.append({"name": SEGMENTER, "version": "in-memory", "sha256": None})
                if lesion is not None:
                    self.models.append({"name": LESION, "version": "in-memory", "sha256": None})
            self.segmenter = segmenter.eval().to(self.device)
            self.lesion = None if lesion is None else lesion.eval().to(self.device)
        self.config = config
        self.decoding: dict | None = self._manifests.get(LOCALIZER, {}).get("decoding")
        """The localizer's calibration of the column decoding (its manifest's ``decoding``), None for in-memory
        models (the decoder's defaults, `inference.label`, then apply)."""

    def _load(self, name: str, weights_root: Path | None, build) -> torch.nn.Module:
        state, manifest = load_state(name, weights_root)
        try:
            model = build(manifest["architecture"])
            model.load_state_dict(state)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise WeightsError(
                manifest.get("file"), f"weights do not fit the architecture ({exc}); reinstall SpineNav"
            ) from None
        self.models.append({"name": name, "version": manifest.get("version"), "sha256": manifest["sha256"]})
        self._manifests[name] = manifest
        return model

    def analyze(
        self, ct: Volume, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> Case:
        """Find, name and (with a segmenter) segment every vertebra of ``ct``; the result as a `Case`.

        A vertebra with a mask is centred on its mask's centroid (what the bundle exports); the
        localizer's point stays in ``localizer_center_lps``. Raises `CancelledError` between stages
        when ``cancel`` is set.
        """
        check_analyzable(ct)
        tell = report(progress)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tell(0.05, "localizing vertebrae")
        check_cancel(cancel)
        out = self._run_localizer(ct, cancel)
        timings["localize"] = time.perf_counter() - t0
        check_cancel(cancel)
        t3 = time.perf_counter()
        tell(0.4, "following the spinal column")
        cands, spine = self.column_candidates(out, ct)
        timings["column"] = time.perf_counter() - t3
        seg, ribs, bone_ribs, sliver = None, None, None, False
        if self.segmenter is not None:
            t2 = time.perf_counter()
            seg, ribs = self.segment_candidates(ct, cands, sub_progress(tell, 0.5, 0.95), cancel)
            if self.config.fill_gaps:
                cands, seg, ribs = self.fill_gaps(ct, out, cands, seg, ribs, cancel)
            if self.config.body_seeds and spine is not None:
                cands, seg, ribs = self.seed_on_bodies(ct, spine, cands, seg, ribs, cancel)
            if self.config.top_sliver and spine is not None and cands:
                cands, seg, ribs, sliver = self.add_top_sliver(ct, out, spine, cands, seg, ribs)
            timings["segment"] = time.perf_counter() - t2
        check_cancel(cancel)
        t1 = time.perf_counter()
        tell(0.96 if self.segmenter is not None else 0.8, "labeling the column")
        config, calibration = self.config, self.decoding_settings()
        if seg is not None and config.bone_ribs:
            bone_ribs = self.ribs_from_bone(ct, cands, seg)
            if sliver:  # an arch cut by the scan's edge: whether its ribs are in view cannot be told
                bone_ribs[0] = None
        cues = np.ones((len(cands), len(LEVELS)))
        if ribs is not None and config.rib_cue:
            cues *= rib_likelihoods(ribs, calibration["rib_likelihood"])
        if bone_ribs is not None:
            cues *= bone_rib_likelihoods(bone_ribs)
        dec = decode(np.array([c.level_probs for c in cands]).reshape(len(cands), len(LEVELS)),
                     scores=np.array([min(1.0, c.score) for c in cands]),
                     cues=cues,
                     temperature=calibration["emission_temperature"],
                     posterior_temperature=calibration["posterior_temperature"])
        vertebrae = []
        for n, c in enumerate(cands):
            vid = int(dec.ids[n])
            if vid == 0:
                continue  # decoded as a false detection
            top = np.argsort(-dec.posterior[n])[:3]
            alts = [{"name": registry.name_of(LEVELS[k]), "p": round(float(dec.posterior[n, k]), 4)} for k in top]
            vertebrae.append(Vertebra(
                vid, np.asarray(c.center_lps, dtype=float), confidence=float(dec.confidence[n]),
                confidence_source=ANALYSIS_SOURCE, alternatives=alts,
                p_shift_cranial=float(dec.p_shift_cranial[n]), p_shift_caudal=float(dec.p_shift_caudal[n]),
                detection_score=c.score, localizer_center_lps=np.asarray(c.center_lps, dtype=float),
                rib_ml=None if ribs is None else ribs[n],
                ribs_seen=None if bone_ribs is None or bone_ribs[n] is None
                else {"left": bone_ribs[n].left, "right": bone_ribs[n].right},
            ))
        # the last rib pair is checked in the bone where it is read there (the segmenter's rib channel saw the
        # sample's T12 and L1 alike, and it cannot tell a 40 mm slab's rib that leaves the scan from none)
        shown, anchored = shown_confidence(dec.ids, dec.confidence, ribs if bone_ribs is None else None, bone_ribs)
        if not anchored:
            # no landmark in view: the levels come from the look of a few vertebrae, which on real
            # small fields of view was wrong for every vertebra (docs/localization.md)
            for v, conf in zip(vertebrae, shown[dec.ids != 0], strict=True):
                v.confidence = float(conf)
                v.qa_flags.append("label_unanchored")
        if seg is not None:
            seg = relabel(seg, {n + 1: int(dec.ids[n]) for n in range(len(cands))})
            # no score where the classifier never saw a lesion (lesion_score stays None: not assessed)
            seg = clear_lesions(seg, [registry.id_of(name) for name in NOT_SCORED])
            for v in vertebrae:
                m = seg.masks.get(v.id)
                if m is None or not m.lesion_scores:
                    continue
                v.lesion_scores = dict(m.lesion_scores)
                v.lesion_score = m.lesion_score
                v.lesion_type = m.lesion_type
                if m.lesion_score >= LESION_FLAG:
                    v.qa_flags.append(f"lesion_suspected:{m.lesion_type}")
        timings["label"] = time.perf_counter() - t1
        qa = _qa(vertebrae, ct, seg)
        # one center per vertebra: its mask's centroid, the point the bundle exports; and the centre of
        # its body (in front of the canal), where the app's slice views put the vertebra's marker
        centroids = vertebra_centers(seg.labels) if seg is not None else {}
        bodies = body_centers_from_shape(seg.labels_in_box()) if centroids else {}
        for v in vertebrae:
            if v.id in centroids:
                v.center_lps = np.asarray(centroids[v.id], dtype=float)
            if v.id in bodies:
                v.body_center_lps = np.asarray(bodies[v.id], dtype=float)
        tell(1.0, f"{len(vertebrae)} vertebrae")
        masked = bool(centroids)  # no mask at all: a centers-only case
        return Case(ct, vertebrae, labels=seg.labels if masked else None,
                    lesions=seg.lesions if masked else None, qa=qa, models=list(self.models),
                    compute={"device": str(self.device), "precision": self.precision},
                    run_config=config.to_json() | {k: calibration[k] for k in RECORDED_DECODING},
                    timings=timings, localizer=out, segmentation=seg)

    def decoding_settings(self) -> dict:
        """Temperatures and rib table of the column decoding: the run configuration's where it sets them,
        else the localizer weights' calibration, else (in-memory models) the decoder's defaults."""
        from . import label

        cal = self.decoding or {}
        table = cal.get("rib_likelihood")
        return {
            "emission_temperature": self.config.emission_temperature if self.config.emission_temperature is not None
            else float(cal.get("emission_temperature", label.EMISSION_TEMPERATURE)),
            "posterior_temperature": self.config.posterior_temperature
            if self.config.posterior_temperature is not None
            else float(cal.get("posterior_temperature", label.POSTERIOR_TEMPERATURE)),
            "rib_likelihood": {k: tuple(v) for k, v in table.items()} if table else label.RIB_LIKELIHOOD,
            "decoding_from": "localizer manifest" if cal else "decoder defaults (the localizer carries no calibration)",
        }

    def candidates(self, out: LocalizerOutput, ct: Volume | None = None) -> list[Candidate]:
        """The candidates that the labeling decodes, head to foot: from the column tracked in ``ct`` or
        from the whole scan, as the run configuration's ``detection`` says (whole scan without ``ct``)."""
        return self.column_candidates(out, ct)[0]

    def column_candidates(self, out: LocalizerOutput, ct: Volume | None = None
                          ) -> tuple[list[Candidate], StraightSpine | None]:
        """`candidates`, and the straightened spine they were read along (None where they come from the whole
        scan)."""
        scan = order_head_to_foot(drop_off_column(
            sorted(find_candidates(out), key=lambda c: -c.score)[:self.config.max_candidates]))
        if ct is None:
            return scan, None
        along = None if self.config.detection == "scan" else candidates_along_column(ct, out, scan, MIN_DISTANCE_MM)
        cands, spine = (scan, None) if along is None else along
        if spine is not None and self.config.skipped_cervical:
            cands = with_skipped_cervical(spine, cands, out)
        return (with_sacrum_from_bone(ct, cands, out) if self.config.sacrum_from_bone else cands), spine

    def segment_candidates(self, ct: Volume, cands: list[Candidate], progress: ProgressCallback | None = None,
                           cancel: CancelToken | None = None) -> tuple[SegmentationOutput, list[float | None]]:
        """Masks of all candidates under provisional tags 1…n (renamed by `segment.relabel` once the
        column is named) and each candidate's rib cue, which the naming needs. A candidate whose
        strongest localizer vote is the sacrum gets the sacrum's taller crop (`SACRUM_PATCH`)."""
        patches = [patch_of(LEVEL_IDS[int(np.argmax(c.level_probs))]) for c in cands]
        seg = self._run_segmenter(ct, [(n + 1, c.center_lps) for n, c in enumerate(cands)], progress, cancel,
                                  patches)
        return seg, [seg.masks[n + 1].rib_ml if n + 1 in seg.masks else None for n in range(len(cands))]

    @staticmethod
    def ribs_from_bone(ct: Volume, cands: list[Candidate], seg: SegmentationOutput) -> list[RibSides | None]:
        """The ribs seen from bone beside each candidate (`inference.column.rib_pairs`); None for a candidate
        the segmentation left without a mask (no rib can be told to touch it)."""
        sides = rib_sides(ct, seg.labels, {n + 1: c.center_lps for n, c in enumerate(cands) if n + 1 in seg.masks})
        return [sides.get(n + 1) for n in range(len(cands))]

    def fill_gaps(self, ct: Volume, out: LocalizerOutput, cands: list[Candidate], seg: SegmentationOutput,
                  ribs: list[float | None], cancel: CancelToken | None = None
                  ) -> tuple[list[Candidate], SegmentationOutput, list[float | None]]:
        """Add the vertebrae that the masks of their neighbours show the chain skipped
        (`inference.column.gaps`) and segment again, up to `GAP_ROUNDS` times; unchanged when none is
        missed (the usual case: the second segmentation is paid only where a vertebra was added).
        An added candidate is centred on the point found between its neighbours' candidate points (lines
        between their mask centroids instead added fewer vertebrae on the CT angiogram, masks no better),
        takes the localizer's level votes there (`candidate_placed_at`) and the lower detection score of its two
        neighbours, which the masks vouch for as much as for them."""
        for _ in range(GAP_ROUNDS):
            missed = missed_vertebrae(ct, seg.labels, np.array([c.center_lps for c in cands]))
            if not missed:
                break
            check_cancel(cancel)
            added: dict[int, list[Candidate]] = {}
            for n, point in missed:
                added.setdefault(n, []).append(
                    candidate_placed_at(out, point, min(cands[n].score, cands[n + 1].score)))
            cands = [x for n, c in enumerate(cands) for x in [c, *added.get(n, [])]]
            seg, ribs = self.segment_candidates(ct, cands, cancel=cancel)
        return cands, seg, ribs

    def seed_on_bodies(self, ct: Volume, spine: StraightSpine, cands: list[Candidate], seg: SegmentationOutput,
                       ribs: list[float | None], cancel: CancelToken | None = None
                       ) -> tuple[list[Candidate], SegmentationOutput, list[float | None]]:
        """Seed the candidates whose mask missed their own body on the column's centreline in their plane
        (`inference.column.body_seeds`: a vertebra cut by the scan's edge whose heatmap maximum lay on its arch)
        and segment again; unchanged when every mask holds its body. The candidate keeps its level votes and
        score; only its point moves (its exported centre is its new mask's centroid). A candidate whose strongest
        vote is the sacrum stays where it is: the sacrum curves away from the column's line (its point comes from
        its bone, `inference.column.sacrum`)."""
        centers = np.array([c.center_lps for c in cands])
        moved = {n: point for n, point in off_body_candidates(spine, seg.labels, centers)
                 if LEVEL_IDS[int(np.argmax(cands[n].level_probs))] not in SACRUM_IDS}
        if not moved:
            return cands, seg, ribs
        check_cancel(cancel)
        cands = [dataclasses.replace(c, center_lps=moved[n]) if n in moved else c for n, c in enumerate(cands)]
        seg, ribs = self.segment_candidates(ct, cands, cancel=cancel)
        return cands, seg, ribs

    @staticmethod
    def add_top_sliver(ct: Volume, out: LocalizerOutput, spine: StraightSpine, cands: list[Candidate],
                       seg: SegmentationOutput, ribs: list[float | None]
                       ) -> tuple[list[Candidate], SegmentationOutput, list[float | None], bool]:
        """Put the vertebra above the top candidate, whose arch alone the scan's upper edge left in view
        (`inference.column.edge_slivers`), at the head of the candidates, its mask that arch's unclaimed bone
        (the other masks' tags move down by one), and whether one was added. It takes the localizer's votes at
        its centre and the top candidate's score; no rib cue is read for it, and no lesion is scored."""
        found = top_sliver(ct, seg.labels, spine, 1)
        if found is None:
            return cands, seg, ribs, False
        labels = seg.labels.array
        box = seg.box or tuple(slice(0, n) for n in labels.shape)
        inside = labels[box]
        inside[inside != 0] += 1
        labels[tuple(found.mask.T)] = 1
        lo, hi = found.mask.min(axis=0), found.mask.max(axis=0) + 1
        box = union_box([box, tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))])
        voxels_2mm = int(round(found.ml * 1000.0 / SEGMENTER_SPACING_MM**3))
        masks = {1: VertebraMask(1, voxels_2mm)} | {
            k + 1: dataclasses.replace(m, id=k + 1) for k, m in seg.masks.items()}
        seg = dataclasses.replace(seg, masks=masks, box=box)
        top = candidate_placed_at(out, found.center_lps, cands[0].score)
        return [top, *cands], seg, [None, *ribs], True

    def _run_segmenter(self, ct: Volume, items: list[tuple[int, np.ndarray]], progress, cancel,
                       patches: list[tuple[int, int, int]] | None = None) -> SegmentationOutput:
        kwargs = {"adapt_intensity": self.config.adapt_intensity, "lesion_thresholds": self.lesion_thresholds,
                  "lesion_model": self.lesion, "patches": patches, "progress": progress, "cancel": cancel,
                  "precision": self.precision, "mirror": self.config.segmenter_mirror}
        try:
            return segment_vertebrae(self.segmenter, ct, items, self.device, **kwargs)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            self._fall_back_to_cpu()
            return segment_vertebrae(self.segmenter, ct, items, self.device, batch_size=1,
                                     **{**kwargs, "precision": self.precision})

    def _run_localizer(self, ct: Volume, cancel: CancelToken | None) -> LocalizerOutput:
        """The localizer's pass (with the configured mirror pass and scan descriptor)."""
        descriptor = None if self.config.scan_descriptor is None else np.asarray(self.config.scan_descriptor)
        try:
            return run_localizer(self.localizer, ct, self.device, cancel=cancel, precision=self.precision,
                                 mirror=self.config.localizer_mirror, descriptor=descriptor)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            self._fall_back_to_cpu()
            return run_localizer(self.localizer, ct, self.device, cancel=cancel, mirror=self.config.localizer_mirror,
                                 descriptor=descriptor)

    def _fall_back_to_cpu(self) -> None:
        """GPU out of memory: every model moves to the CPU in float32, and stays there for this pipeline's
        later analyses (slower, same result). All models together: a pipeline never mixes devices."""
        torch.cuda.empty_cache()
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.localizer = self.localizer.to(self.device)
        if self.segmenter is not None:
            self.segmenter = self.segmenter.to(self.device)
        if self.lesion is not None:
            self.lesion = self.lesion.to(self.device)


def _qa(vertebrae: list[Vertebra], ct: Volume, seg: SegmentationOutput | None = None) -> list[str]:
    """Per-vertebra flags (in place) and case-level notes: gaps, doubtful labels, border cuts, masks."""
    notes = intensity_notes(ct)
    if not vertebrae:
        lo, hi = ct.extent()
        height = float(hi[2] - lo[2])
        if height < SHORT_SCAN_MM:
            notes.append(f"no vertebra found in a field of view {height:.0f} mm tall: too short to find and name "
                         f"vertebrae reliably; analyze a scan that covers at least {SHORT_SCAN_MM:.0f} mm of the spine")
        else:
            notes.append("no vertebra found: is this a CT of the spine?")
    if any("label_unanchored" in v.qa_flags for v in vertebrae):
        notes.append("labels not anchored: neither the sacrum nor a first or last rib was found in the scan (C2 is "
                     "not read from the scan yet), so the levels are guessed from the shape of a few vertebrae; "
                     "count them from a landmark the scan shows")
    k, j, i = ct.array.shape
    for v in vertebrae:
        if v.confidence < UNCERTAIN_BELOW:
            v.qa_flags.append("label_uncertain")
        idx = ct.lps_to_index(v.localizer_center_lps[None])[0]
        dist_vox = np.minimum(idx, np.array([i, j, k]) - 1 - idx)
        if np.any(dist_vox * np.array(ct.spacing) < BORDER_MM):
            v.qa_flags.append("partial_at_border")
    pos = {vid: n for n, vid in enumerate(LEVELS)}
    transitional = {registry.id_of("T13"), registry.id_of("L6")}
    for a, b in zip(vertebrae, vertebrae[1:], strict=False):
        between = [vid for vid in LEVELS[pos[a.id] + 1 : pos[b.id]] if vid not in transitional]
        if between:
            names = ", ".join(registry.name_of(x) for x in between)
            notes.append(f"gap between {a.name} and {b.name}: {names} not found")
            a.qa_flags.append("gap_below")
            b.qa_flags.append("gap_above")
    if seg is not None:
        in_box = seg.labels_in_box()  # every mask, without the empty rest of a big scan
        present = set(vertebra_voxel_counts(in_box))
        for v in vertebrae:
            if v.id not in present:
                v.qa_flags.append("no_mask")
                notes.append(f"{v.name} was found but the segmentation left no voxel of it: check it by eye")
        cut_mm2 = field_of_view_cut_areas(seg.labels)  # masks reaching a face of the grid
        for v in vertebrae:  # a mask the scan's edge cuts across more than a process tip
            if "partial_at_border" not in v.qa_flags and cut_mm2.get(v.id, 0.0) > CUT_AREA_MM2:
                v.qa_flags.append("partial_at_border")
        partial = {v.id for v in vertebrae if "partial_at_border" in v.qa_flags} | set(cut_mm2)
        flags, mask_notes = mask_flags(in_box, partial)
        metal, metal_notes = metal_flags(in_box, ct.array if seg.box is None else ct.array[seg.box])
        for v in vertebrae:
            v.qa_flags += [f for f in flags.get(v.id, []) + metal.get(v.id, []) if f not in v.qa_flags]
        notes += mask_notes + metal_notes
    return notes


def check_analyzable(ct: Volume) -> None:
    """`InputError` for a CT the analysis cannot use: too thin, too coarse, or beyond the memory budget.

    Checked before any work, so a 2-slice or 2×2×2 volume that `read_ct` accepts (it is a valid
    image) gets a sentence instead of a filter's failure deep inside a stage.
    """
    from .io.checks import check_memory

    path = ct.metadata.get("source_path")
    extent = [s * n for s, n in zip(ct.spacing, ct.size, strict=True)]
    if min(extent) < MIN_ANALYSIS_EXTENT_MM:
        axis = int(np.argmin(extent))
        raise InputError(path, f"the CT covers only {extent[axis]:.1f} mm along its {'ijk'[axis]} axis "
                         f"({ct.size[axis]} voxels of {ct.spacing[axis]:g} mm); a vertebra needs at least "
                         f"{MIN_ANALYSIS_EXTENT_MM:g} mm in every direction: load the whole series")
    if max(ct.spacing) > MAX_ANALYSIS_SPACING_MM:
        raise InputError(path, f"voxels of {'×'.join(f'{s:g}' for s in ct.spacing)} mm are too coarse to show a "
                         f"vertebra (at most {MAX_ANALYSIS_SPACING_MM:g} mm); load a CT reconstructed with thinner "
                         "slices")
    n_vox = int(np.prod(ct.size, dtype=np.int64))
    check_memory(path, ANALYSIS_BYTES_BASE + ANALYSIS_BYTES_PER_VOXEL * n_vox,
                 f"analysing this CT ({'×'.join(map(str, ct.size))} voxels)")

