"""Can a model repair what the debugging teacher could not? A probe, not a benchmark.

For every unsolved trajectory in a trajectories file, the model gets the trajectory's
conversation up to its first failing version (the problem, that version as the assistant's
reply, and the teacher's own fix request with the sandbox's error), answers once, and the reply
is tested in the sandbox. Prints how many it repaired and how many replies repeat the failing code.

    python bench/repair_probe.py MODEL_DIR data/trajectories.jsonl [--problems data/problems.jsonl]
"""

import argparse
import json
import time

import torch

from iterpref import prompts
from iterpref.llm import make_generator
from iterpref.llm.base import SamplingConfig
from iterpref.records import Problem, Trajectory, read_jsonl
from iterpref.sandbox import SandboxConfig, run_unittest_many
from iterpref.debugging.teachers.llm import code_of, fix_request


def fix_conversation(problem: Problem, traj: Trajectory) -> list[dict]:
    """The teacher's conversation after the trajectory's first (failing) version."""
    first = traj.attempts[0]
    return [{"role": "user", "content": prompts.user_message(problem.instruction, problem.signature)},
            {"role": "assistant", "content": f"```python\n{first.code}\n```"},
            {"role": "user", "content": fix_request(first.outcome)}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("trajectories")
    ap.add_argument("--problems", default="data/seed/problems.jsonl")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    problems = {p.task_id: p for p in read_jsonl(args.problems, Problem)}
    failed = [t for t in read_jsonl(args.trajectories, Trajectory) if not t.solved and t.attempts]
    gen = make_generator("hf", args.model, device="cpu", dtype=args.dtype)
    sampling = SamplingConfig(max_new_tokens=512, temperature=args.temperature, top_p=0.95,
                              stop_after_code=True, batch_size=16, seed=0)
    start = time.time()
    replies = gen.chat([fix_conversation(problems[t.task_id], t) for t in failed], sampling, progress="repair")
    seconds = time.time() - start
    codes = [code_of(r) for r in replies]
    outcomes = run_unittest_many([(c, problems[t.task_id].tests) for c, t in zip(codes, failed)], SandboxConfig())
    squash = lambda code: "".join(code.split())  # noqa: E731 (whitespace-blind comparison)
    print(json.dumps({
        "model": args.model, "failed_trajectories": len(failed),
        "repaired_in_one_round": sum(o.passed for o in outcomes),
        "identical_to_failing_version": sum(squash(c) == squash(t.attempts[0].code) for c, t in zip(codes, failed)),
        "generation_s": round(seconds, 1),
        "repaired": [t.trajectory_id for t, o in zip(failed, outcomes) if o.passed],
    }))


if __name__ == "__main__":
    main()
