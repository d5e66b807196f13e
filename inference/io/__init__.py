"""Reading CTs and label maps into `Volume` objects with exact LPS geometry."""

from .ct import ct_info, format_ct_info, read_ct
from .grid import onto_grid
from .image_file import read_image_file
from .labels import read_label_map

__all__ = ["ct_info", "format_ct_info", "onto_grid", "read_ct", "read_image_file", "read_label_map"]
