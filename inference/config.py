"""The run configuration: every setting of an analysis in one frozen object (DESIGN §1).

`Pipeline` takes one and records it in the case (and so in the bundle's manifest, ``run_config``).
Validation tools and experiments pass another configuration instead of patching module constants;
the defaults are the shipped settings, each chosen by a measurement named in its comment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DETECTIONS = ("column", "scan")
"""Sources of vertebra candidates (`RunConfig.detection`)."""


@dataclass(frozen=True)
class RunConfig:
    """Settings of one analysis.

    Attributes
    ----------
    localizer_mirror : bool
        Localizer test-time augmentation: average the pass on the scan and on its left-right mirror.
        On 100 held-out synthetic cases (docs/labeling_calibration.md) it named 1104 of 1322 matched
        vertebrae right against 1072 of 1324 without it; it doubles the localizer's network time.
    segmenter_mirror : bool
        Segmentation test-time augmentation: each crop also runs left-right mirrored, probabilities
        averaged. With the true centers it lifted the mean Dice from 0.854 to 0.856 on the 18 real
        reference vertebrae (HD95 5.57 → 5.52 mm) and from 0.8317 to 0.8336 on 283 vertebrae of 30
        held-out synthetic cases; with the rib table re-measured through it, the 100 calibration
        cases went from 1104 to 1112 of 1322 named right. It doubles the segmenter's network time.
    max_candidates : int
        Strongest heatmap peaks kept for decoding (a whole spine has 26 levels).
    emission_temperature, posterior_temperature : float or None
        Of the column decoding (`inference.label.decode`): the localizer's votes are tempered by the
        first; the second tempers only the probabilities shown. None (in use): the calibration that
        travels with the localizer's weights (its manifest's ``decoding``: fitted on 100 held-out
        synthetic cases, docs/labeling_calibration.json), as is the rib table.
    rib_cue : bool
        Let the rib volume beside each vertebra (`inference.ribs`) weigh in the naming.
    adapt_intensity : bool
        Shift HU so that the scan's soft-tissue median matches the training data (unusual scanners).
    scan_descriptor : tuple of float, optional
        A fixed scan descriptor for the localizer instead of the scan's own (the descriptor ablation
        of `inference.train.validate_real`); None in use.
    detection : {"column", "scan"}
        Where vertebra candidates come from. "scan": peaks of the localizer's heatmap over the whole
        scan above a fixed threshold. "column": the column is tracked from bone (`inference.column`)
        and the heatmap is read along it (`inference.column.bodies`), one candidate per vertebra of
        the chain, plus whole-scan peaks beyond the chain's ends (vertebrae cut by the scan's edge);
        the whole-scan peaks alone where no column is found. Chosen on real CT (docs/localization.md).
    fill_gaps : bool
        Add the vertebrae the candidate chain skipped, found where bone between two neighbouring masks is
        left unclaimed over more than a disc's length (`inference.column.gaps`), and segment again.
        Needs the segmenter. Measured on real CT in docs/localization.md.
    sacrum_from_bone : bool
        Place the sacrum's candidate on the centroid of the bone below L5 between the sacro-iliac joints
        (`inference.column.sacrum`) instead of the localizer's point; its crop and exported centre follow.
    bone_ribs : bool
        Read from the CT which vertebrae carry ribs (`inference.column.rib_pairs`, once every candidate
        has a mask): a rib seen beside a candidate weighs in the naming for a thoracic level
        (`inference.label.BONE_RIB_SEEN`), and a rib at the vertebra named T12 (or T13) with none at L1
        anchors the column (the last rib pair; this check replaces the segmenter rib channel's, which stays
        a cue of the naming). Needs the segmenter.
    body_seeds : bool
        Seed again on the column's centreline, and segment again, a candidate whose mask missed its own body
        (`inference.column.body_seeds`: a vertebra cut by the scan's edge, its heatmap maximum on its arch).
        Needs the segmenter and the column.
    top_sliver : bool
        Add the vertebra above the column's top whose arch alone the scan's upper edge left in view, its mask
        the unclaimed bone behind the top vertebra's arch that the edge cuts (`inference.column.edge_slivers`).
        Needs the segmenter and the column.
    skipped_cervical : bool
        Put back, between two neighbouring candidates that vote cervical and lie more than 1.6 cervical spacings
        apart along the column, the vertebrae the chain skipped there (`inference.column.cervical`: the
        heatmap's 8 mm grid merges the peaks of neighbouring cervical vertebrae). Needs the column.
    """

    localizer_mirror: bool = True
    segmenter_mirror: bool = True
    max_candidates: int = 60
    emission_temperature: float | None = None
    posterior_temperature: float | None = None
    rib_cue: bool = True
    adapt_intensity: bool = False
    scan_descriptor: tuple[float, ...] | None = None
    detection: str = "column"
    fill_gaps: bool = True
    sacrum_from_bone: bool = True
    bone_ribs: bool = True
    body_seeds: bool = True
    top_sliver: bool = True
    skipped_cervical: bool = True

    def __post_init__(self) -> None:
        if self.detection not in DETECTIONS:
            raise ValueError(f"detection must be one of {', '.join(DETECTIONS)}, not {self.detection!r}")

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        if self.scan_descriptor is not None:
            doc["scan_descriptor"] = [float(x) for x in self.scan_descriptor]
        return doc


SHIPPED = RunConfig()
"""The settings `spinenav analyze` and the app use."""
