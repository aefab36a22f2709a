"""Stage `debug`: teacher writes, sandbox tests, teacher fixes -> data/trajectories.jsonl.

Resumable: finished trajectories go to .cache/debug/<config hash>.jsonl as they complete.
"""

import json
from pathlib import Path

from iterpref import debugging
from iterpref import params as P
from iterpref.records import Problem, read_jsonl, write_jsonl
from iterpref.sandbox import SandboxConfig
from iterpref.teachers import make_teacher

if __name__ == "__main__":
    params = P.load()
    problems = read_jsonl("data/problems.jsonl", Problem)
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    cfg = P.build(debugging.DebugConfig, params["debug"], "debug")
    teacher = make_teacher(params["teacher"], sandbox)
    key = debugging.config_hash(params["teacher"], params["debug"], params["sandbox"], [p.task_id for p in problems])
    trajectories, stats = debugging.run(
        problems, teacher, cfg, sandbox, resume_log=Path(".cache/debug") / f"{key}.jsonl",
        provenance={"params_hash": key, "teacher": teacher.name},
    )
    write_jsonl("data/trajectories.jsonl", trajectories)
    print(json.dumps(stats))
