"""Pedicle screw planning on a vertebra label map (DESIGN §5 trajectories.json): proposal, sizes, breach."""

from .screws import (
                     CATALOGUE,
                     TRAJECTORIES,
                     Catalogue,
                     Screw,
                     VertebraModel,
                     evaluate,
                     grade_of,
                     plan_pair,
                     plan_vertebra,
                     screws_collide,
)

__all__ = ["CATALOGUE", "TRAJECTORIES", "Catalogue", "Screw", "VertebraModel", "evaluate", "grade_of", "plan_pair",
           "plan_vertebra", "screws_collide"]
