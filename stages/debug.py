"""Stage `debug`: teacher writes, sandbox tests, teacher fixes -> data/trajectories.jsonl,
reports/debug.json.

Resumable: finished trajectories go to .cache/debug/<hash>.jsonl as they complete, keyed by the
teacher, debug and sandbox params and the problems themselves; an interrupted run resumes from
it, and a finished run deletes it (so changed code never reuses a stale log). An LLM teacher's
replies are also cached on disk (teacher.cache_dir), so the trajectories a kill -9 cut short
replay their finished turns for free. A served teacher (`teacher=llm_vllm`) gets its server
started before the trajectories and stopped after them, also when the stage fails.

The report (printed, and written to reports/debug.json) counts trajectories, solved ones,
sandbox runs, teacher faults by cause, trajectories and solved ones by teacher name, and the
response cache's hits and misses; in ``mutate_samples`` mode also the samples drawn and how many
problems had a passing one (``sample_mutation``).
"""

import json
from pathlib import Path

from iterpref import debugging, runtime
from iterpref import params as P
from iterpref.cli import command
from iterpref.debugging.teachers import make_teacher
from iterpref.debugging.teachers.sample_mutation import SampleMutationTeacher
from iterpref.llm.cache import CachedGenerator
from iterpref.llm.served import running
from iterpref.records import Problem, read_jsonl, to_dict, write_jsonl
from iterpref.sandbox import SandboxConfig


@command
def main() -> None:
    params = P.load()
    problems = read_jsonl("data/problems.jsonl", Problem)
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    cfg = P.build(debugging.DebugConfig, params["debug"], "debug")
    teacher = make_teacher(params["teacher"], sandbox)
    generator = getattr(teacher, "generator", None)  # an LLM teacher's (the mutation teacher has none)
    teacher = debugging.teacher_for_mode(teacher, cfg, sandbox)
    key = debugging.config_hash(params["teacher"], params["debug"], params["sandbox"], [to_dict(p) for p in problems])
    resume_log = Path(".cache/debug") / f"{key}.jsonl"
    with running(generator):  # a served teacher's server, stopped after
        trajectories, stats = debugging.run(
            problems, teacher, cfg, sandbox, resume_log=resume_log,
            provenance={"params_hash": key, "teacher": teacher.name},
        )
    write_jsonl("data/trajectories.jsonl", trajectories)
    resume_log.unlink(missing_ok=True)
    if isinstance(generator, CachedGenerator):
        stats["teacher_cache"] = generator.stats()
    if isinstance(teacher, SampleMutationTeacher):
        stats["sample_mutation"] = teacher.stats()
    report = {**stats, "peak_rss_gib": runtime.peak_rss_gib()}
    Path("reports").mkdir(exist_ok=True)
    Path("reports/debug.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
