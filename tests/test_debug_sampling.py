"""debug.mode=sampling, the paper's baseline: independent samples (fresh conversations, their own
seeds) under the same call budget as debugging, against a real local chat server and the real
sandbox; and both modes' budget statistics."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest
from chat_server import hermetic_env, serving  # noqa: F401 (fixtures)

from iterpref import debugging
from iterpref.debugging.teachers import make_teacher
from iterpref.problems import load_seed
from iterpref.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = SandboxConfig(timeout_s=10.0, cpu_s=10, workers=2)


@pytest.fixture(scope="module")
def problems():
    return load_seed(ROOT / "data/seed/problems.jsonl", limit=2)


def run(problems, mode: str, tmp_path: Path, right_after: int):
    """Problem 0 is answered right on its ``right_after``-th request (counted from 0), problem 1
    never; returns the trajectories, the stats and the requests' bodies."""
    asked: Counter[int] = Counter()

    def respond(body: dict) -> str:
        i = next(i for i, p in enumerate(problems) if p.instruction.strip() in body["messages"][0]["content"])
        asked[i] += 1
        code = problems[i].reference if i == 0 and asked[i] > right_after else problems[i].signature + "\n    return None\n"
        return f"```python\n{code.rstrip()}\n```"

    with serving(respond) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        teacher = make_teacher({"kind": "llm", "backend": "openai", "model": "scripted", "base_url": server.url,
                                "max_retries": 0, "cache_dir": None, "sampling": {"temperature": 0.7}}, SANDBOX)
        cfg = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=3, workers=1, mode=mode)
        trajs, stats = debugging.run(problems, teacher, cfg, SANDBOX, resume_log=tmp_path / f"{mode}.jsonl")
        return trajs, stats, [r.body for r in server.requests]


def test_sampling_draws_independent_samples_within_the_budget(problems, tmp_path):
    trajs, stats, bodies = run(problems, "sampling", tmp_path, right_after=2)
    solved, unsolved = trajs
    assert solved.solved and [a.outcome.passed for a in solved.attempts] == [False, False, True]
    assert not unsolved.solved and len(unsolved.attempts) == 4  # max_rounds + 1 calls, no more
    assert all(len(b["messages"]) == 1 for b in bodies), "every sample is a fresh conversation"
    seeds = [b["seed"] for b in bodies]
    assert len(set(seeds)) == len(seeds) == 7
    assert stats["mode"] == "sampling" and stats["teacher_calls"] == 7 and stats["tasks_solved"] == 1
    assert stats["tasks_solved_within_calls"] == {"1": 0.0, "2": 0.0, "3": 0.5, "4": 0.5}


def test_debugging_mode_continues_one_conversation(problems, tmp_path):
    trajs, stats, bodies = run(problems, "debugging", tmp_path, right_after=1)
    assert [len(t.attempts) for t in trajs] == [2, 4]
    assert max(len(b["messages"]) for b in bodies) == 7  # v0, error, v1, error, v2, error -> v3
    assert stats["mode"] == "debugging" and stats["tasks_solved_within_calls"]["2"] == 0.5


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="debug.mode: unknown 'beam'"):
        debugging.DebugConfig(mode="beam")
