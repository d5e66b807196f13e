"""Session model: the loaded case and shared view state, exposed as Qt signals."""

from .session import LabelSet, Session, VertebraInfo, vertebra_infos

__all__ = ["LabelSet", "Session", "VertebraInfo", "vertebra_infos"]
