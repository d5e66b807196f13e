"""Cervical vertebrae the candidate chain skipped, put back from the spacing of their neighbours (DESIGN §1).

The localizer's heatmap comes on an 8 mm grid. Cervical vertebrae lie 13-22 mm apart (centroids of the real
columns in `assets/shapes/layouts.json`: C1-C2 15-20, C2-C3 19-22, C3-C7 11-20 mm), close to the shortest
period that grid can show, and read along the column their peaks merge in pairs: on held-out synthetic CT the
chain took every other cervical vertebra (45 of 79 found, 21 named right; thoracic 275 of 313), and the
segmenter, seeded on each of those, gave one mask over two vertebrae, so no bone is left unclaimed for
`inference.column.gaps` to find.

Between two neighbouring candidates that both vote mostly cervical (at least `CERVICAL_VOTE` of their level
votes on C1-C7), lying more than `SKIP_RATIO` times `SPACING_MM` apart along the column, ``round(d /
SPACING_MM) - 1`` candidates are put evenly between them on the centreline's path (the straight-spine frame
interpolated between the two), each with the localizer's votes there and the lower score of the two
neighbours. The naming (`inference.label`) then names them as one sequence, as it does the rest.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..localize import Candidate, LocalizerOutput, candidate_placed_at
from ..models.localizer import LEVEL_IDS
from .straighten import StraightSpine

SPACING_MM = 17.0
"""A cervical vertebra's distance to the next (C3-C7 of the real columns: 13-20 mm, median 17)."""
SKIP_RATIO = 1.6
"""Neighbours farther apart than this many spacings (27 mm) have a vertebra between them: single spacings
reach 22 mm (C2-C3), two spacings start at 26 mm."""
CERVICAL_VOTE = 0.5
CERVICAL = np.array([registry.by_id(vid).region == "cervical" for vid in LEVEL_IDS])
"""Which of the localizer's level classes are C1-C7."""


def with_skipped_cervical(spine: StraightSpine, cands: list[Candidate], out: LocalizerOutput) -> list[Candidate]:
    """``cands`` (head to foot) with the cervical vertebrae the chain skipped put back between them (see the
    module docstring); unchanged outside the cervical column."""
    if len(cands) < 2:
        return cands
    sal = spine.from_lps(np.array([c.center_lps for c in cands]))
    cervical = [float(np.asarray(c.level_probs)[CERVICAL].sum()) >= CERVICAL_VOTE for c in cands]
    result = [cands[0]]
    for n in range(len(cands) - 1):
        d = abs(float(sal[n + 1, 0] - sal[n, 0]))
        if cervical[n] and cervical[n + 1] and d > SKIP_RATIO * SPACING_MM:
            missing = int(round(d / SPACING_MM)) - 1
            score = min(cands[n].score, cands[n + 1].score)
            for m in range(1, missing + 1):
                f = m / (missing + 1)
                point = spine.to_lps(((1 - f) * sal[n] + f * sal[n + 1])[None])[0]
                result.append(candidate_placed_at(out, point, score))
        result.append(cands[n + 1])
    return result
