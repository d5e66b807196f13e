"""The spine-first stages (DESIGN §1): the column tracked from bone geometry (`track`), the straightened
spine along it (`straighten`), and vertebra candidates read along it (`bodies`)."""

from __future__ import annotations

import numpy as np
import torch

from ..localize import Candidate, LocalizerOutput, candidate_at
from ..volume import Volume
from .bodies import MIN_PEAK, body_chain, column_candidates, heat_profile, with_end_vertebrae
from .sequence import plane_probabilities, plane_s, votes_at
from .straighten import StraightSpine, straighten
from .track import ColumnTrack, track_column


def candidates_along_column(ct: Volume, out: LocalizerOutput, scan: list[Candidate],
                            min_distance_mm: float) -> tuple[list[Candidate], StraightSpine] | None:
    """Vertebra candidates of ``ct`` along its tracked column, head to foot, with the whole-scan candidates
    ``scan`` beyond the column's ends (`bodies.with_end_vertebrae`), and the straightened spine (frames
    only, not resampled); None when no column is found."""
    track = track_column(ct)
    if len(track.points_lps) < 2:
        return None
    spine = straighten(ct, track, resample=False)
    along = column_candidates(spine, out)
    if not along:
        return None
    return with_end_vertebrae(spine, along, scan, min_distance_mm), spine


CENTROID_SEARCH_MM = 4.0
"""How far along the column from a centre-heat peak the localizer's heatmap maximum is looked for."""
CENTROID_AP_MM = 8.0
"""A vertebra's mask centroid (body and arch together) lies about this far behind the tracked centreline
(median over the sample CT's and the TPTBox cutout's references, 0 to 21 mm)."""


def candidates_from_sequence(ct: Volume, out: LocalizerOutput, scan: list[Candidate], min_distance_mm: float,
                             net: torch.nn.Module, device: torch.device
                             ) -> tuple[list[Candidate], StraightSpine] | None:
    """Vertebra candidates of ``ct`` seen by the level-sequence network ``net`` along the tracked column: the
    chain (`bodies.body_chain`) of the peaks of its centre heat, head to foot, with the network's level votes
    there as ``level_probs`` and the localizer's in ``localizer_probs``. Each lies where the localizer's
    heatmap is highest near the column in that plane (the localizer learned the mask centroid, which the
    segmenter's crop needs), or `CENTROID_AP_MM` behind the centreline where that heatmap is flat. Plus the
    whole-scan candidates ``scan`` beyond the first and last (`bodies.with_end_vertebrae`), and the
    straightened spine. None when no column is found or the network sees no vertebra on it."""
    track = track_column(ct)
    if len(track.points_lps) < 2:
        return None
    spine = straighten(ct, track)
    probs, heat = plane_probabilities(net, ct, spine, device)
    s = plane_s(spine)
    peaks = body_chain(s, heat)
    if not peaks:
        return None
    votes = votes_at(probs, s, s[peaks])
    s_h, h_h, kji_h = heat_profile(spine, out)
    cands = []
    for n in np.argsort(-s[peaks]):  # head to foot
        near = np.flatnonzero(np.abs(s_h - s[peaks[n]]) <= CENTROID_SEARCH_MM)
        best = near[np.argmax(h_h[near])] if near.size else None
        if best is not None and h_h[best] >= MIN_PEAK:
            kji = kji_h[best]
        else:
            centre = spine.to_lps(np.array([[s[peaks[n]], CENTROID_AP_MM, 0.0]]))[0]
            kji = np.clip(np.round(out.grid.lps_to_index(centre[None])[0][::-1]).astype(int), 0,
                          np.array(out.heatmap.shape) - 1)
        loc = candidate_at(out, kji)
        centre = loc.center_lps if best is not None and h_h[best] >= MIN_PEAK else centre
        cands.append(Candidate(centre, float(heat[peaks[n]]), votes[n], loc.foreground,
                               localizer_probs=loc.level_probs))
    return with_end_vertebrae(spine, cands, scan, min_distance_mm), spine


__all__ = ["ColumnTrack", "StraightSpine", "candidates_along_column", "candidates_from_sequence", "column_candidates",
           "straighten", "track_column", "with_end_vertebrae"]
