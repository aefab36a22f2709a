"""Stage `debug`: teacher writes, sandbox tests, teacher fixes -> data/trajectories.jsonl.

Resumable: finished trajectories go to .cache/debug/<hash>.jsonl as they complete, keyed by the
teacher, debug and sandbox params and the problems themselves; an interrupted run resumes from
it, and a finished run deletes it (so changed code never reuses a stale log).
"""

import json
from pathlib import Path

from iterpref import debugging
from iterpref import params as P
from iterpref import runtime
from iterpref.records import Problem, read_jsonl, to_dict, write_jsonl
from iterpref.sandbox import SandboxConfig
from iterpref.teachers import make_teacher

if __name__ == "__main__":
    params = P.load()
    problems = read_jsonl("data/problems.jsonl", Problem)
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    cfg = P.build(debugging.DebugConfig, params["debug"], "debug")
    teacher = make_teacher(params["teacher"], sandbox)
    key = debugging.config_hash(params["teacher"], params["debug"], params["sandbox"], [to_dict(p) for p in problems])
    resume_log = Path(".cache/debug") / f"{key}.jsonl"
    trajectories, stats = debugging.run(
        problems, teacher, cfg, sandbox, resume_log=resume_log,
        provenance={"params_hash": key, "teacher": teacher.name},
    )
    write_jsonl("data/trajectories.jsonl", trajectories)
    resume_log.unlink(missing_ok=True)
    print(json.dumps({**stats, "peak_rss_gib": runtime.peak_rss_gib()}))
