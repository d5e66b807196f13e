"""Qt widgets: they read the session and draw; they compute nothing."""

from .main_window import MainWindow
from .slice_view import SliceView
from .vertebra_table import VertebraTable
from .view3d import View3D

__all__ = ["MainWindow", "SliceView", "VertebraTable", "View3D"]
