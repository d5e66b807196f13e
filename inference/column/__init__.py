"""The spine-first stages (DESIGN §1): the column tracked from bone geometry, then (to come) the
straightened spine, the disc chain and naming as a sequence."""

from .track import ColumnTrack, track_column

__all__ = ["ColumnTrack", "track_column"]
