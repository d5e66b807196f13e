"""The spine-first stages (DESIGN §1): the column tracked from bone geometry (`track`), the straightened
spine along it (`straighten`), vertebra candidates read along it (`bodies`), the ones the masks show it
skipped (`gaps`), the sacrum's centre from the bone below L5 (`sacrum`), the vertebrae that carry ribs
(`rib_pairs`), the candidates to seed again on their body where their mask missed it (`body_seeds`) and the arch
of the vertebra above the top one that the scan's edge cut off (`edge_slivers`), and the cervical vertebrae
the chain skipped (`cervical`)."""

from __future__ import annotations

from ..localize import Candidate, LocalizerOutput
from ..volume import Volume
from .bodies import column_candidates, with_end_vertebrae
from .body_seeds import off_body_candidates
from .cervical import with_skipped_cervical
from .edge_slivers import Sliver, top_sliver
from .gaps import missed_vertebrae
from .rib_pairs import RibSides, rib_sides
from .sacrum import sacrum_point, with_sacrum_from_bone
from .straighten import StraightSpine, straighten
from .track import ColumnTrack, track_column


def candidates_along_column(ct: Volume, out: LocalizerOutput, scan: list[Candidate],
                            min_distance_mm: float) -> tuple[list[Candidate], StraightSpine] | None:
    """Vertebra candidates of ``ct`` along its tracked column, head to foot, with the whole-scan candidates
    ``scan`` beyond the column's ends (`bodies.with_end_vertebrae`), and the straightened spine they were read
    along; None when no column is found."""
    track = track_column(ct)
    if len(track.points_lps) < 2:
        return None
    spine = straighten(ct, track, resample=False)
    along = column_candidates(spine, out)
    if not along:
        return None
    return with_end_vertebrae(spine, along, scan, min_distance_mm), spine


__all__ = ["ColumnTrack", "RibSides", "Sliver", "StraightSpine", "candidates_along_column", "column_candidates",
           "missed_vertebrae", "off_body_candidates", "rib_sides", "sacrum_point", "straighten", "top_sliver",
           "track_column", "with_end_vertebrae", "with_sacrum_from_bone", "with_skipped_cervical"]
