"""Synthetic training CT (domain-randomized) from real vertebra shapes (DESIGN §6).

`generate` makes one case from a seed; `write_cases` writes a reproducible set of NIfTI files.
"""

from .config import SynthConfig, small_config
from .generator import SynthCase, generate
from .writer import write_cases

__all__ = ["SynthCase", "SynthConfig", "generate", "small_config", "write_cases"]
