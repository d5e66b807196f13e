"""The session model (Qt signals) and the Qt-free label corrections it keeps."""

from inference.corrections import Correction, CorrectionError

from .session import LabelSet, Session, VertebraInfo, analysis_infos, vertebra_infos

__all__ = ["Correction", "CorrectionError", "LabelSet", "Session", "VertebraInfo", "analysis_infos", "vertebra_infos"]
