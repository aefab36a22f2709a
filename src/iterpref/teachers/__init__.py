"""Teachers write the code versions of debugging trajectories (see `base` for the protocol)."""

from iterpref.teachers.base import DebugSession, Teacher
from iterpref.teachers.mutation import OPERATORS, MutationSession, MutationTeacher, Mutation

__all__ = ["DebugSession", "Teacher", "MutationTeacher", "MutationSession", "Mutation", "OPERATORS", "make_teacher"]


def make_teacher(cfg: dict, sandbox) -> Teacher:
    """The teacher a params ``teacher`` section describes."""
    cfg = dict(cfg)
    cfg.pop("materialize", None)  # built by the teacher_model stage; `model` then names its folder
    kind = cfg.pop("kind")
    if kind == "mutation":
        return MutationTeacher(sandbox=sandbox, **cfg)
    if kind == "llm":
        from iterpref.llm import make_generator
        from iterpref.llm.base import SamplingConfig
        from iterpref.teachers.llm import LLMTeacher

        options = {k: v for k, v in cfg.items() if k not in ("backend", "model", "device", "sampling")}
        generator = make_generator(cfg["backend"], cfg["model"], cfg.get("device", "auto"), **options)
        sampling = SamplingConfig(**cfg.get("sampling", {}))
        if cfg["backend"] == "hf":  # one in-process model: batch the trajectories' turns together
            from iterpref.llm.batching import BatchingGenerator

            generator = BatchingGenerator(generator, max_batch=sampling.batch_size)
        return LLMTeacher(generator, sampling)
    raise ValueError(f"params.yaml: teacher.kind: unknown {kind!r}; expected 'mutation' or 'llm'")
