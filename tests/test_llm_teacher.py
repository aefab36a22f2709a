"""The LLM teacher over the shared generation interface: a real (tiny) model in the real
debugging loop, with the sandbox's error fed back as the next user turn."""

from iterpref import debugging
from iterpref.problems import load_seed
from iterpref.records import Attempt
from iterpref.sandbox import SandboxConfig, run_unittest
from iterpref.teachers import make_teacher

SAMPLING = {"max_new_tokens": 24, "temperature": 0.7, "top_p": 0.95, "batch_size": 1, "seed": 0}


def _teacher(model_dir):
    cfg = {"kind": "llm", "backend": "hf", "model": str(model_dir), "device": "cpu", "sampling": SAMPLING}
    return make_teacher(cfg, SandboxConfig())


def test_feedback_goes_back_to_the_model(tiny_model_dir):
    problem = load_seed("data/seed/problems.jsonl", limit=1)[0]
    teacher = _teacher(tiny_model_dir)
    assert teacher.name.startswith("llm:hf:")
    session = teacher.open(problem, seed=1)
    code, _ = session.write()
    outcome = run_unittest(code, problem.tests, SandboxConfig(timeout_s=5))
    assert not outcome.passed  # a random 1M-parameter model does not solve it
    session.fix([Attempt(0, code, outcome)])
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert problem.signature in session.messages[0]["content"]
    feedback = session.messages[2]["content"]
    assert outcome.status in feedback and "Fix the code" in feedback
    assert (outcome.traceback.strip() or "(no output)")[:50] in feedback


def test_llm_teacher_in_the_debugging_loop(tiny_model_dir, tmp_path):
    problems = load_seed("data/seed/problems.jsonl", limit=1)
    cfg = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=2, workers=1)
    trajs, stats = debugging.run(problems, _teacher(tiny_model_dir), cfg, SandboxConfig(timeout_s=5),
                                 resume_log=tmp_path / "log.jsonl")
    (traj,) = trajs
    assert [a.round for a in traj.attempts] == [0, 1, 2]
    assert not traj.solved and traj.teacher.startswith("llm:")
    assert all(a.outcome.status != "passed" for a in traj.attempts)
    # sampling is seeded per trajectory: the same run reproduces the same versions
    again, _ = debugging.run(problems, _teacher(tiny_model_dir), cfg, SandboxConfig(timeout_s=5),
                             resume_log=tmp_path / "log2.jsonl")
    assert [a.code for a in again[0].attempts] == [a.code for a in traj.attempts]


def test_an_in_process_teacher_batches_the_trajectories_turns(tiny_model_dir, tmp_path):
    """With an hf teacher, concurrent trajectories share batched decodes; greedy versions are the
    same as when every trajectory runs alone."""
    from iterpref.llm.batching import BatchingGenerator

    problems = load_seed("data/seed/problems.jsonl", limit=3)
    greedy = {**SAMPLING, "temperature": 0.0, "batch_size": 8}
    cfg = {"kind": "llm", "backend": "hf", "model": str(tiny_model_dir), "device": "cpu", "sampling": greedy}
    teacher = make_teacher(cfg, SandboxConfig())
    assert isinstance(teacher.generator, BatchingGenerator)
    run = debugging.DebugConfig(trajectories_per_problem=2, max_rounds=2, workers=6)
    trajs, _ = debugging.run(problems, teacher, run, SandboxConfig(timeout_s=5), resume_log=tmp_path / "a.jsonl")
    assert len(trajs) == 6 and max(teacher.generator.batches) > 1
    assert sum(teacher.generator.batches) == sum(len(t.attempts) for t in trajs)
    alone = make_teacher(cfg, SandboxConfig())
    solo, _ = debugging.run(problems, alone, debugging.DebugConfig(trajectories_per_problem=2, max_rounds=2, workers=1),
                            SandboxConfig(timeout_s=5), resume_log=tmp_path / "b.jsonl")
    assert max(alone.generator.batches) == 1
    assert [[a.code for a in t.attempts] for t in trajs] == [[a.code for a in t.attempts] for t in solo]


def test_a_failing_batch_fails_every_waiting_caller():
    import pytest

    from iterpref.llm.base import SamplingConfig
    from iterpref.llm.batching import BatchingGenerator

    class Broken:
        name = "broken"

        def chat(self, conversations, sampling, progress=None):
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        BatchingGenerator(Broken()).chat([[{"role": "user", "content": "x"}]], SamplingConfig())
