"""The one registry of params sections: each key of params.yaml, the config dataclass beside the
code that reads it, where it is used, and the data folder the files it names must stay in.

The composition check (`iterpref.config.schema`), the configuration reference
(`iterpref.config.reference`) and the DVC graph (`iterpref.config.graph`: a stage that reads a
section depends on its data folder) all read it. It sits at the top of the layers: it imports
every package's config.
"""

from __future__ import annotations

from dataclasses import dataclass

from iterpref.debugging import DebugConfig
from iterpref.debugging.teachers import MutationTeacherConfig
from iterpref.evaluation.run import DATA_DIR as BENCHMARK_DIR
from iterpref.evaluation.run import EvalConfig
from iterpref.llm import GeneratorConfig
from iterpref.llm.base import SamplingConfig
from iterpref.llm.served import ServerConfig
from iterpref.models import ModelConfig
from iterpref.pairs.build import PairConfig
from iterpref.problems.build import SOURCES, ProblemsConfig, source_config
from iterpref.problems.decontaminate import DecontaminateConfig
from iterpref.problems.dedup import DedupConfig
from iterpref.problems.seed import DATA_DIR as SEED_DIR
from iterpref.problems.validate import ValidateConfig
from iterpref.runtime import RuntimeConfig
from iterpref.sandbox import SandboxConfig
from iterpref.tracking import LoggingConfig, WandbConfig
from iterpref.training.launch import LaunchConfig
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig


@dataclass(frozen=True)
class Section:
    """One params section.

    Attributes:
        key: its dotted params key (``<name>`` stands for any name).
        cls: the dataclass its keys must fit.
        note: where it is used (the configuration reference prints it).
        folder: the folder every file it names must stay in (its stages depend on it), or None.
    """

    key: str
    cls: type
    note: str = ""
    folder: str | None = None


# The top-level sections in params order; `checked_by` of schema says which need more than a dataclass.
TOP = ["model", "problems", "teacher", "sandbox", "debug", "pairs", "train", "eval", "logging", "runtime"]

# teacher.kind -> the dataclass of a teacher section of that kind
TEACHER_KINDS = {"mutation": MutationTeacherConfig, "llm": GeneratorConfig}

SECTIONS: list[Section] = [
    Section("model", ModelConfig, "the model group; the `model` stage"),
    Section("problems", ProblemsConfig, "the problems group; the `synthesize` stage"),
    Section("problems.validate", ValidateConfig),
    Section("problems.dedup", DedupConfig),
    Section("problems.decontaminate", DecontaminateConfig),
    *[Section(f"problems.{s}", source_config(s), f"with `problems={s}`", SEED_DIR) for s in SOURCES],
    Section("teacher", MutationTeacherConfig, "`teacher=mutation`; the `debug` stage"),
    Section("teacher", GeneratorConfig, "`teacher=llm_*` (kind llm); also `problems.synthesize.teacher`"),
    Section("sandbox", SandboxConfig, "every stage that runs code"),
    Section("debug", DebugConfig, "the `debug` stage"),
    Section("pairs", PairConfig, "the `pairs` stage"),
    Section("train.common", TrainConfig,
            "shared by every variant; `train.variants.<name>` overrides keys (loss, mask)", "conf/accelerate"),
    Section("train.variants.<name>.mask", MaskConfig, "which tokens enter the log-prob sums"),
    Section("train", LaunchConfig, "how the `train` stage runs, beside `common`, `run` (the variants trained) "
                                   "and `variants`"),
    Section("eval", EvalConfig, "the `evaluate` stages"),
    Section("eval.data.<name>", str, "a benchmark's local data file", BENCHMARK_DIR),
    Section("eval.sampling", SamplingConfig, "also `teacher.sampling`"),
    Section("eval.server", ServerConfig, "also `teacher.server`"),
    Section("logging", LoggingConfig, "bookkeeping: no stage re-runs when it changes"),
    Section("logging.wandb", WandbConfig, "bookkeeping: no stage re-runs when it changes"),
    Section("runtime", RuntimeConfig, "every model stage"),
]


def section(key: str) -> Section:
    """The first registered section of ``key``."""
    return next(s for s in SECTIONS if s.key == key)


def folders() -> dict[str, str]:
    """The params key of each file a section names (its dataclass's ``FILE_FIELDS``; a section
    that is itself a file, ``eval.data.<name>``, by its key up to the template) -> the folder the
    file stays in (``eval.data`` -> data/benchmarks: each benchmark's file in its own subfolder)."""
    out = {}
    for s in SECTIONS:
        if s.folder:
            names = getattr(s.cls, "FILE_FIELDS", ())
            keys = [s.key.split(".<")[0]] if s.cls is str else [f"{s.key}.{n}" for n in names]
            out.update(dict.fromkeys(keys, s.folder))
    return out
