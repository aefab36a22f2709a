"""The synthesize stage's work: source -> de-duplicate -> decontaminate -> validate -> report.

Cheap filters run first, so the sandbox only sees problems that could be kept. Validation (and
a source's own sandbox step, such as CodeI/O's test generation) runs in a worker pool with a
progress bar, and each finished problem, kept or dropped, is appended to a resume log at once:
a crash or a kill repeats no validated problem. The log is keyed by a hash of the settings and
of the candidates themselves, so a change of either starts afresh.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from iterpref.config.fields import build as build_config
from iterpref.problems.base import Candidate, Drop, Dropped, Harvest, count_reasons
from iterpref.problems.decontaminate import DecontaminateConfig, decontaminate, load_index
from iterpref.problems.dedup import DedupConfig, deduplicate
from iterpref.problems.validate import ValidateConfig, validate
from iterpref.records import Problem, RecordError, append_jsonl, config_hash, from_dict, to_dict
from iterpref.sandbox import SandboxConfig

SOURCES = {name: f"iterpref.problems.{name}" for name in ("seed", "codeio", "synthesize", "hf")}
EXAMPLES_PER_REASON = 5


@dataclass
class ProblemsConfig:
    """The ``problems`` params section, less the chosen source's own section.

    Parameters:
        source (`str`, defaults to `"seed"`):
            Where problems come from: ``seed``, ``codeio``, ``synthesize`` or ``hf``; its
            settings are the section of the same name (``problems.codeio``...).
        limit (`int` or `None`, defaults to `None`):
            Candidates taken from the source (its first ones); None: all.
        validate (`ValidateConfig`): sandbox validation (`iterpref.problems.validate`).
        dedup (`DedupConfig`): duplicate removal (`iterpref.problems.dedup`).
        decontaminate (`DecontaminateConfig`): benchmark overlap removal
            (`iterpref.problems.decontaminate`).
    """

    source: str = "seed"
    limit: int | None = None
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)


@dataclass
class Validated:
    """One problem's validation result, as the resume log stores it.

    Attributes:
        task_id: the problem's id.
        problem: the problem as kept (tests included); None when dropped.
        tests: tests the reference passed.
        reason: why it was dropped; None when kept.
        detail: what exactly failed.
    """

    task_id: str
    problem: Problem | None = None
    tests: int = 0
    reason: str | None = None
    detail: str = ""


def source_config(source: str) -> type | None:
    """The config dataclass of problem source ``source`` (None for an unknown source)."""
    return importlib.import_module(SOURCES[source]).Config if source in SOURCES else None


def load_config(section: dict) -> tuple[ProblemsConfig, object]:
    """The shared config and the chosen source's own config from a params ``problems`` section."""
    section = dict(section)
    source = section.get("source", "seed")
    if source not in SOURCES:
        raise ValueError(f"params.yaml: problems.source: unknown {source!r}; expected one of {sorted(SOURCES)}")
    own = section.pop(source, None)
    for other in SOURCES:
        section.pop(other, None)
    nested = {"validate": ValidateConfig, "dedup": DedupConfig, "decontaminate": DecontaminateConfig}
    for key, cls in nested.items():
        section[key] = build_config(cls, section.get(key), f"problems.{key}")
    module = importlib.import_module(SOURCES[source])
    return build_config(ProblemsConfig, section, "problems"), build_config(module.Config, own, f"problems.{source}")


def _load_log(path: Path) -> dict[str, Validated]:
    """Results already in the resume log; a line cut short by a crash ends the log there."""
    if not path.exists():
        return {}
    done, good = {}, []
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        try:
            v = from_dict(Validated, json.loads(line))
        except (ValueError, RecordError):
            break
        done[v.task_id] = v
        good.append(line + "\n")
    if "".join(good) != text:
        path.write_text("".join(good), encoding="utf-8")
    return done


def _check_one(c: Candidate, harvest: Harvest, cfg: ValidateConfig, sandbox: SandboxConfig) -> Validated:
    try:
        problem = harvest.prepare(c, sandbox) if harvest.prepare else c.problem
        tests = validate(problem, cfg, sandbox, c.origin)
    except Drop as d:
        return Validated(c.problem.task_id, reason=d.reason, detail=d.detail)
    return Validated(c.problem.task_id, problem=problem, tests=tests)


def validate_all(candidates: list[Candidate], harvest: Harvest, cfg: ValidateConfig, sandbox: SandboxConfig,
                 resume_log: Path) -> tuple[list[Validated], int]:
    """Every candidate's `Validated`, in order, and how many came from the resume log."""
    done = _load_log(resume_log)
    todo = [c for c in candidates if c.problem.task_id not in done]
    lock = threading.Lock()

    def one(c: Candidate) -> None:
        v = _check_one(c, harvest, cfg, sandbox)
        with lock:
            append_jsonl(resume_log, v)
            done[v.task_id] = v
            bar.update(1)
            bar.set_postfix(kept=sum(x.problem is not None for x in done.values()), refresh=False)

    with (tqdm(total=len(candidates), initial=len(candidates) - len(todo), desc="validate problems") as bar,
          ThreadPoolExecutor(max_workers=cfg.workers) as pool):
        for fut in [pool.submit(one, c) for c in todo]:
            fut.result()
    return [done[c.problem.task_id] for c in candidates], len(candidates) - len(todo)


def build(params: dict, sandbox: SandboxConfig, eval_data: dict | None = None,
          resume_dir: str | Path = ".cache/problems") -> tuple[list[Problem], dict]:
    """The kept problems and the report (reports/problems.json) for a params ``problems``
    section; ``eval_data`` is ``eval.data`` (benchmark files for decontamination)."""
    start = time.monotonic()
    cfg, source_cfg = load_config(params)
    harvest = importlib.import_module(SOURCES[cfg.source]).harvest(source_cfg, cfg.limit)
    dropped = list(harvest.dropped)
    unique, dups = deduplicate(harvest.candidates, cfg.dedup)
    index = load_index(cfg.decontaminate, eval_data)
    clean, hits_dropped, hits = decontaminate(unique, index, cfg.decontaminate.threshold)
    key = config_hash(params, to_dict(sandbox), [to_dict(c.problem) for c in clean])
    resume_log = Path(resume_dir) / f"{key}.jsonl"
    checked = time.monotonic()
    results, resumed = validate_all(clean, harvest, cfg.validate, sandbox, resume_log)
    validation_s = time.monotonic() - checked
    kept = [v for v in results if v.problem is not None]
    dropped += dups + hits_dropped + [Dropped(v.task_id, v.reason, v.detail) for v in results if v.reason]
    total = len(harvest.candidates) + len(harvest.dropped)
    per_source: dict[str, dict[str, int]] = {}
    for v in kept:
        per_source.setdefault(v.problem.source, {"kept": 0, "tests": 0})
        per_source[v.problem.source]["kept"] += 1
        per_source[v.problem.source]["tests"] += v.tests
    tests = [v.tests for v in kept]
    examples: dict[str, list[str]] = {}
    for d in dropped:
        if len(examples.setdefault(d.reason, [])) < EXAMPLES_PER_REASON:
            examples[d.reason].append(f"{d.task_id}: {d.detail[:500]}")
    report = {
        "source": cfg.source,
        "candidates": total,
        "kept": len(kept),
        "kept_share": round(len(kept) / total, 4) if total else 0.0,
        "dropped": count_reasons(dropped),
        "per_source": per_source,
        "tests": {"total": sum(tests), "mean": round(sum(tests) / len(tests), 2) if tests else 0.0,
                  "min": min(tests, default=0), "max": max(tests, default=0)},
        "decontamination": {"benchmarks": index.tasks, "ngram": cfg.decontaminate.ngram,
                            "threshold": cfg.decontaminate.threshold, "removed": len(hits), "hits": hits},
        "validation": {"checked": len(clean), "resumed": resumed, "wall_s": round(validation_s, 1),
                       "problems_per_s": round((len(clean) - resumed) / validation_s, 2) if validation_s else 0.0},
        "wall_s": round(time.monotonic() - start, 1),
        "source_stats": harvest.stats,
        "drop_examples": examples,
    }
    resume_log.unlink(missing_ok=True)
    return [v.problem for v in kept], report
