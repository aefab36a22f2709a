"""The LLM teacher over the shared generation interface: a real (tiny) model in the real
debugging loop, with the sandbox's error fed back as the next user turn.

The tiny random model writes noise without code fences, which the teacher takes for a reply
with no code (a fault, not a version); `Fenced` puts its replies in a python fence, so that its
noise (or, greedy, its blank reply) becomes versions that fail the tests, as a weak model's code
would.
"""

import pytest

from iterpref import debugging
from iterpref.debugging.teachers import TeacherError, make_teacher
from iterpref.debugging.teachers.llm import code_of
from iterpref.llm.base import SamplingConfig
from iterpref.llm.batching import BatchingGenerator
from iterpref.llm.cache import CachedGenerator
from iterpref.problems import load_seed
from iterpref.records import Attempt
from iterpref.sandbox import SandboxConfig, run_unittest

SAMPLING = {"max_new_tokens": 24, "temperature": 0.7, "top_p": 0.95, "batch_size": 1, "seed": 0}


class Fenced:
    """A generator whose replies are another's, each in a python code fence after a comment
    (so that a blank reply, too, is a version)."""

    def __init__(self, generator):
        self.generator, self.name = generator, generator.name

    def chat(self, conversations, sampling, progress=None):
        return [f"```python\n# the model wrote:\n{r}\n```"
                for r in self.generator.chat(conversations, sampling, progress)]


def _config(model_dir, **sampling):
    return {"kind": "llm", "backend": "hf", "model": str(model_dir), "device": "cpu",
            "sampling": {**SAMPLING, **sampling}}


def _teacher(model_dir, **sampling):
    """The tiny model's teacher, its replies fenced."""
    teacher = make_teacher(_config(model_dir, **sampling), SandboxConfig())
    teacher.generator = Fenced(teacher.generator)
    return teacher


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
    """With an hf teacher, concurrent trajectories decode together (a turn joins the rows already
    decoding); greedy versions are the same as when every trajectory runs alone."""
    problems = load_seed("data/seed/problems.jsonl", limit=3)
    teacher = _teacher(tiny_model_dir, temperature=0.0, batch_size=8)
    batching = teacher.generator.generator
    assert isinstance(batching, BatchingGenerator)
    run = debugging.DebugConfig(trajectories_per_problem=2, max_rounds=2, workers=6)
    trajs, _ = debugging.run(problems, teacher, run, SandboxConfig(timeout_s=5), resume_log=tmp_path / "a.jsonl")
    assert len(trajs) == 6 and max(batching.runs) > 1
    alone = _teacher(tiny_model_dir, temperature=0.0, batch_size=8)
    solo, _ = debugging.run(problems, alone, debugging.DebugConfig(trajectories_per_problem=2, max_rounds=2, workers=1),
                            SandboxConfig(timeout_s=5), resume_log=tmp_path / "b.jsonl")
    assert max(alone.generator.generator.runs) == 1
    assert [[a.code for a in t.attempts] for t in trajs] == [[a.code for a in t.attempts] for t in solo]


def test_noise_without_code_is_a_teacher_fault_not_a_version(tiny_model_dir, tmp_path):
    problems = load_seed("data/seed/problems.jsonl", limit=2)
    teacher = make_teacher(_config(tiny_model_dir), SandboxConfig())  # unfenced
    cfg = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=2, workers=2)
    trajs, stats = debugging.run(problems, teacher, cfg, SandboxConfig(timeout_s=5), resume_log=tmp_path / "log.jsonl")
    assert stats["teacher_faults"] == {"no_code": 2} and stats["solved"] == 0 and stats["sandbox_runs"] == 0
    for t in trajs:
        assert t.attempts == [] and not t.solved
        assert (t.teacher_fault.round, t.teacher_fault.cause) == (0, "no_code")
        assert "no python code in the reply" in t.teacher_fault.detail


@pytest.mark.parametrize("reply, cause", [
    ("", "empty_reply"), ("  \n\t", "empty_reply"),
    ("I am sorry, I cannot solve this.", "no_code"), ("Sorry", "no_code"),  # "Sorry" parses as Python
    ("Here:\n```python\n```", "no_code"), ("x = 1\nprint(x)", "no_code"),
])
def test_replies_without_code(reply, cause):
    with pytest.raises(TeacherError) as err:
        code_of(reply)
    assert err.value.cause == cause


@pytest.mark.parametrize("reply, code", [
    ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
    ("```python\ndef f(:\n```", "def f(:"),  # fenced: a version, even one that does not parse
    ("```python\ndef f():\n    return", "def f():\n    return"),  # cut short by max_new_tokens
    ("import math\n\ndef f():\n    return math.pi\n", "import math\n\ndef f():\n    return math.pi"),  # bare code
])
def test_replies_with_code(reply, code):
    assert code_of(reply) == code


def test_cached_replies_do_not_wait_for_a_batch(tiny_model_dir, tmp_path):
    """The cache sits in front of the batching generator: a rerun's turns never reach it."""
    problems = load_seed("data/seed/problems.jsonl", limit=2)
    cfg = {**_config(tiny_model_dir, temperature=0.0, batch_size=4), "cache_dir": str(tmp_path / "cache")}
    run = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=1, workers=2)

    def debug(log: str):
        teacher = make_teacher(cfg, SandboxConfig())
        cache = teacher.generator
        assert isinstance(cache, CachedGenerator) and isinstance(cache.generator, BatchingGenerator)
        trajs, _ = debugging.run(problems, teacher, run, SandboxConfig(timeout_s=5), resume_log=tmp_path / log)
        return trajs, cache

    first, cache = debug("first.jsonl")
    assert cache.stats() == {"hits": 0, "misses": 2} and cache.generator.runs != []
    again, cache = debug("again.jsonl")
    assert cache.stats() == {"hits": 2, "misses": 0} and cache.generator.runs == []
    assert [t.teacher_fault for t in again] == [t.teacher_fault for t in first]


def test_a_failing_run_fails_every_waiting_caller():
    class Broken:
        name = "broken"

        def encode(self, conversation):
            return [1, 2]

        def serve(self, take, sampling):
            while take(False) is not None:  # every request enters the run, then the model fails
                pass
            raise RuntimeError("model crashed")

    batching = BatchingGenerator(Broken())
    with pytest.raises(RuntimeError, match="model crashed"):
        batching.chat([[{"role": "user", "content": "x"}], [{"role": "user", "content": "y"}]], SamplingConfig())
    assert batching.runs == [2]
