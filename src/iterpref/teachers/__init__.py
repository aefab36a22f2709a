"""Teachers write the code versions of debugging trajectories (see `base` for the protocol)."""

from iterpref.teachers.base import DebugSession, Teacher
from iterpref.teachers.mutation import OPERATORS, MutationSession, MutationTeacher, Mutation

__all__ = ["DebugSession", "Teacher", "MutationTeacher", "MutationSession", "Mutation", "OPERATORS", "make_teacher"]


def make_teacher(cfg: dict, sandbox) -> Teacher:
    """The teacher a params ``teacher`` section describes."""
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "mutation":
        return MutationTeacher(sandbox=sandbox, **cfg)
    raise ValueError(f"params.yaml: teacher.kind: unknown {kind!r}; expected 'mutation'")
