"""Pedicle screw planning on a vertebra label map (DESIGN §5 trajectories.json): proposal, sizes, breach."""

from .screws import Screw, VertebraModel, evaluate, grade_of, plan_vertebra, propose, screws_collide

__all__ = ["Screw", "VertebraModel", "evaluate", "grade_of", "plan_vertebra", "propose", "screws_collide"]
