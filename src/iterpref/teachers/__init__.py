"""Teachers write the code versions of debugging trajectories (see `base` for the protocol)."""

from iterpref.teachers.base import DebugSession, Teacher
from iterpref.teachers.mutation import OPERATORS, MutationSession, MutationTeacher, Mutation

__all__ = ["DebugSession", "Teacher", "MutationTeacher", "MutationSession", "Mutation", "OPERATORS"]
