"""Teachers write the code versions of debugging trajectories (see `base` for the protocol)."""

from iterpref.debugging.teachers.base import DebugSession, Teacher, TeacherError, TeacherUnavailable
from iterpref.debugging.teachers.mutation import MutationSession, MutationTeacher, MutationTeacherConfig
from iterpref.debugging.teachers.operators import OPERATORS, Mutation

__all__ = ["DebugSession", "Teacher", "TeacherError", "TeacherUnavailable", "MutationTeacher", "MutationTeacherConfig",
           "MutationSession", "Mutation", "OPERATORS", "make_teacher"]


def make_teacher(cfg: dict, sandbox) -> Teacher:
    """The teacher a params ``teacher`` section describes."""
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "mutation":
        cfg.pop("materialize", None)  # built by the teacher_model stage for an LLM teacher
        return MutationTeacher(sandbox=sandbox, **cfg)
    if kind == "llm":
        from iterpref.debugging.teachers.llm import make_llm_teacher

        return make_llm_teacher(cfg)
    raise ValueError(f"params.yaml: teacher.kind: unknown {kind!r}; expected 'mutation' or 'llm'")
