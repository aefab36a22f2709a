"""Would sanitising the teacher's code rescue its failing versions? A probe, not a benchmark.

Every failing version of a trajectories file goes through EvalPlus's sanitiser (the entry
point and what it needs kept; example calls, prints and asserts after the function dropped)
and is tested again in the sandbox. Prints, by the original failure, what the sanitised code
now does, and how many versions and unsolved problems it would rescue.

    python bench/sanitise_probe.py data/trajectories.jsonl [--problems data/problems.jsonl]
"""

import argparse
import json
from collections import Counter

from evalplus.sanitize import sanitize

from iterpref.records import Problem, Trajectory, read_jsonl
from iterpref.sandbox import SandboxConfig, run_unittest_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trajectories")
    ap.add_argument("--problems", default="data/problems.jsonl")
    args = ap.parse_args()
    problems = {p.task_id: p for p in read_jsonl(args.problems, Problem)}
    trajectories = list(read_jsonl(args.trajectories, Trajectory))
    failing = [(t, a) for t in trajectories for a in t.attempts if not a.outcome.passed]
    cleaned = [sanitize(a.code, entrypoint=problems[t.task_id].entry_point) for t, a in failing]
    outcomes = run_unittest_many([(c, problems[t.task_id].tests) for c, (t, _) in zip(cleaned, failing)],
                                 SandboxConfig(), progress="sanitised")
    now = Counter(f"{a.outcome.status} -> {o.status}" for (_, a), o in zip(failing, outcomes))
    rescued = [(t, a) for (t, a), o in zip(failing, outcomes) if o.passed]
    print(json.dumps({
        "failing_versions": len(failing),
        "changed_by_sanitising": sum(c != a.code for c, (_, a) in zip(cleaned, failing)),
        "passing_once_sanitised": len(rescued),
        "unsolved_problems_rescued": len({t.task_id for t, _ in rescued if not t.solved}),
        "before_to_after": dict(now.most_common()),
    }, indent=1))


if __name__ == "__main__":
    main()
