"""The case model (DESIGN §1): one `Vertebra` record per vertebra, one `Case` per analysed or loaded CT.

Every stage reads and writes these records and nothing else: the pipeline returns a `Case`, a label
map becomes one (`case_from_labels`), corrections are functions over one (`inference.corrections`),
the app shows one and the bundle writer (`inference.export.bundle.write_bundle`) writes one. A
vertebra has one ``center_lps``: the point shown on the terminal and in the app is the point the
robot receives. It is the centroid of the vertebra's mask when there is a mask, else the
localizer's point; the localizer's point is kept beside it as ``localizer_center_lps``.

No torch here: the export, the app's state and batch tools import this module without the models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry
from .volume import Volume

LABEL_SOURCE = "label map"
"""``confidence_source`` of vertebrae taken from a given label map (their label is not a guess)."""

ANALYSIS_SOURCE = "localizer + column decoding (posterior probability of the label)"
"""``confidence_source`` of vertebrae the pipeline found and named."""


@dataclass
class Vertebra:
    """One vertebra: what was found, measured and decided about it (coordinates LPS mm).

    Attributes
    ----------
    id : int
        VerSe id (DESIGN §3); ``name`` follows from it.
    center_lps : (3,) float
        The one center: the mask centroid when the vertebra has a mask, else the localizer's point.
    confidence : float or None
        Probability of the label (1.0 for a given label map).
    confidence_source : str
        Where ``confidence`` comes from (`LABEL_SOURCE` or `ANALYSIS_SOURCE`).
    alternatives : list of {"name", "p"}
        The most probable labels (analysis only).
    p_shift_cranial, p_shift_caudal : float or None
        Probability that the true label is one level above / below (analysis only).
    detection_score : float or None
        The localizer's heatmap peak (analysis only).
    localizer_center_lps : (3,) float or None
        The localizer's point (analysis only).
    lesion_score, lesion_type, lesion_scores
        Highest lesion suspicion (0–1), its type when flagged, and the score per type; None / {}
        where not assessed.
    rib_ml : float or None
        The rib cue (`inference.ribs`): rib volume beside the vertebra.
    ribs_seen : dict or None
        Ribs read from bone beside the vertebra (`inference.column.rib_pairs`): ``{"left": …, "right": …}``,
        each True (seen), False (in view, none) or None (not in view); None where not read.
    qa_flags : list of str
        Quality flags (``label_uncertain``, ``partial_at_border``, ``label_corrected``, …).
    volume_ml, voxels, body_center_lps, stl, mesh_volume_ml, mesh_triangles
        Measured from the mask and its mesh when a bundle is written (on the masks written, so a merge
        or an edit is measured anew); None before and without one, except the body center, which
        `Pipeline.analyze` fills too (the app's slice markers). The body center comes from VerSe
        subregions where given, else from the mask's shape (the centroid in front of the canal;
        `planning.geometry.body_centers_from_shape`), None where neither finds one (C1, the sacrum, a
        mask without a canal).
    """

    id: int
    center_lps: np.ndarray
    confidence: float | None = 1.0
    confidence_source: str = LABEL_SOURCE
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    p_shift_cranial: float | None = None
    p_shift_caudal: float | None = None
    detection_score: float | None = None
    localizer_center_lps: np.ndarray | None = None
    lesion_score: float | None = None
    lesion_type: str | None = None
    lesion_scores: dict[str, float] = field(default_factory=dict)
    rib_ml: float | None = None
    ribs_seen: dict[str, bool | None] | None = None
    qa_flags: list[str] = field(default_factory=list)
    volume_ml: float | None = None
    voxels: int | None = None
    body_center_lps: np.ndarray | None = None
    stl: str | None = None
    mesh_volume_ml: float | None = None
    mesh_triangles: int | None = None

    @property
    def name(self) -> str:
        return registry.name_of(self.id)

    @property
    def from_analysis(self) -> bool:
        """True for a vertebra the pipeline found (it carries the localizer's point and the decoder's numbers)."""
        return self.localizer_center_lps is not None

    def replace(self, **changes: Any) -> Vertebra:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The record of vertebrae.json (DESIGN §5), keys in a fixed order, numbers rounded for the file."""
        from .export.formats import mm, point

        doc: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "center_lps": point(self.center_lps),
            "body_center_lps": point(self.body_center_lps),
            "volume_ml": None if self.volume_ml is None else mm(self.volume_ml),
            "mesh_volume_ml": None if self.mesh_volume_ml is None else mm(self.mesh_volume_ml),
            "voxels": self.voxels,
            "confidence": None if self.confidence is None else mm(self.confidence, 4),
            "confidence_source": self.confidence_source,
            "alternatives": [dict(a) for a in self.alternatives],
            "lesion_score": None if self.lesion_score is None else mm(self.lesion_score, 4),
            "qa_flags": list(self.qa_flags),
            "stl": self.stl,
            "mesh_triangles": self.mesh_triangles,
        }
        if self.from_analysis:
            doc.update({
                "lesion_type": self.lesion_type,
                "lesion_scores": {k: mm(x, 4) for k, x in self.lesion_scores.items()},
                "p_shift_cranial": None if self.p_shift_cranial is None else mm(self.p_shift_cranial, 4),
                "p_shift_caudal": None if self.p_shift_caudal is None else mm(self.p_shift_caudal, 4),
                "detection_score": None if self.detection_score is None else mm(self.detection_score, 4),
                "rib_ml": None if self.rib_ml is None else mm(self.rib_ml, 2),
                "ribs_seen": None if self.ribs_seen is None else dict(self.ribs_seen),
                "localizer_center_lps": point(self.localizer_center_lps),
            })
        return doc


@dataclass
class Case:
    """One CT with its vertebrae and everything computed or decided about them.

    Attributes
    ----------
    ct : Volume or None
        The CT (None for a label map exported without its CT).
    vertebrae : list of Vertebra
        Head to foot.
    labels : Volume or None
        VerSe ids on the CT grid (the label map's own grid without a CT); None for a centers-only
        analysis.
    lesions : Volume or None
        Lesion suspicion on the same grid.
    subregions : Volume or None
        VerSe subregion map (49/50 = body) for body centers, when given.
    qa : list of str
        Case-level notes (gaps, unanchored labels, leaking masks, intensities).
    warnings : list of str
        Notes about the input (e.g. overlapping masks resolved).
    models : list of dict
        Models that produced the vertebrae (name, version, sha256).
    compute : dict or None
        Where the networks ran (``device``, ``precision``).
    run_config : dict or None
        The analysis' settings (`inference.config.RunConfig.to_json`).
    timings : dict
        Seconds per stage.
    corrections : list of dict
        The user's label corrections (what, from, to, time).
    input_info : dict
        Identity of the inputs for the manifest (paths, hashes, label convention).
    localizer, segmentation
        The analysis' intermediate outputs (heatmaps and votes; per-mask facts), for validation
        tools and figures; None for a label map.
    """

    ct: Volume | None
    vertebrae: list[Vertebra]
    labels: Volume | None = None
    lesions: Volume | None = None
    subregions: Volume | None = None
    qa: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    compute: dict[str, str] | None = None
    run_config: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    input_info: dict[str, Any] = field(default_factory=dict)
    localizer: Any = None
    segmentation: Any = None

    @property
    def device(self) -> str | None:
        return None if self.compute is None else self.compute.get("device")

    @property
    def precision(self) -> str | None:
        return None if self.compute is None else self.compute.get("precision")

    def by_id(self, vertebra_id: int) -> Vertebra | None:
        return next((v for v in self.vertebrae if v.id == vertebra_id), None)

    def replace(self, **changes: Any) -> Case:
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """Lines for the terminal: each vertebra with its label probability and its one center."""
        names = ", ".join(v.name for v in self.vertebrae) or "none"
        lines = [f"{len(self.vertebrae)} vertebrae found: {names}"]
        for v in self.vertebrae:
            c = ", ".join(f"{x:7.1f}" for x in v.center_lps)
            flags = f"  [{', '.join(v.qa_flags)}]" if v.qa_flags else ""
            les = f"  lesion {v.lesion_score:.2f}" if v.lesion_score is not None else ""
            p = f"p={v.confidence:.2f}" if v.confidence is not None else "p=—"
            lines.append(f"  {v.name:<4} {p}  center LPS ({c}) mm{les}{flags}")
        lines += [f"  check: {q}" for q in self.qa]
        if self.timings:
            t = ", ".join(f"{k} {s:.1f} s" for k, s in self.timings.items())
            lines.append(f"  timings on {self.device} ({self.precision}): {t}")
        return "\n".join(lines)


def case_from_labels(labels: Volume, *, ct: Volume | None = None, subregions: Volume | None = None,
                     input_info: dict[str, Any] | None = None, warnings: list[str] | None = None,
                     qa_flags: dict[int, list[str]] | None = None) -> Case:
    """A `Case` from a vertebra label map (VerSe ids): one `Vertebra` per label, at its mask centroid.

    With ``ct`` the labels are put on the CT's grid first (transposed or flipped, never resampled:
    `inference.io.onto_grid`), so the centers are those of the map the bundle will hold.
    ``qa_flags`` adds flags per VerSe id (e.g. ``mask_overlap_resolved``).
    """
    from .io.grid import onto_grid
    from .measure import vertebra_centers

    where = labels.metadata.get("source_path")
    labels = checked_labels(labels, where)
    if ct is not None:
        labels = onto_grid(labels, ct, path=where)
    if subregions is not None:
        subregions = onto_grid(subregions, ct if ct is not None else labels,
                               path=subregions.metadata.get("source_path"), what="subregion map")
    centers = vertebra_centers(labels)
    flags = qa_flags or {}
    vertebrae = [Vertebra(vid, np.asarray(centers[vid], dtype=float), qa_flags=list(flags.get(vid, [])))
                 for vid in registry.sort_ids(centers)]
    return Case(ct, vertebrae, labels=labels, subregions=subregions, warnings=list(warnings or []),
                input_info=dict(input_info or {}))


def checked_labels(labels: Volume, where: str | None) -> Volume:
    """``labels`` as uint8 VerSe ids; `InputError` for non-integer, negative, unknown or no ids."""
    from .errors import InputError

    array = labels.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise InputError(where, "the label map has non-integer values (a probability map?); give integer "
                             "vertebra labels")
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(where, f"the label map has {array.dtype} values; give integer vertebra labels")
    if array.size == 0 or not array.any():
        raise InputError(where, "the label map contains no vertebra (all voxels are background)")
    ids = np.unique(array)
    if ids.min() < 0:
        raise InputError(where, f"the label map has negative values ({int(ids.min())}); give VerSe ids ≥ 0")
    unknown = [int(i) for i in ids if i != 0 and int(i) not in registry.VALID_IDS]
    if unknown:
        raise InputError(where, f"unknown vertebra ids {unknown[:10]} (VerSe numbering: 1–26, 28); convert the "
                         "labels first (read_label_map does it for TotalSegmentator files)")
    if array.dtype != np.uint8:
        labels = Volume(array.astype(np.uint8), labels.spacing, labels.origin, labels.direction, dict(labels.metadata))
    return labels
