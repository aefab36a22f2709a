"""debug.mode=mutate_samples: bugs injected into the teacher's own passing sample, against a real
local chat server and the real sandbox, and the pairs built from the trajectories."""

from __future__ import annotations

import ast
import warnings
from collections import Counter
from pathlib import Path

import pytest
from chat_server import hermetic_env, serving  # noqa: F401 (fixtures)

from iterpref import debugging
from iterpref.debugging.teachers import make_teacher
from iterpref.pairs.build import PairConfig, build_pairs
from iterpref.problems import load_seed
from iterpref.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = SandboxConfig(timeout_s=10.0, cpu_s=10, workers=2)
RIGHT_AFTER = 1  # problem 0 is answered right from its second request on; problem 1 never


@pytest.fixture(scope="module")
def problems():
    return load_seed(ROOT / "data/seed/problems.jsonl", limit=2)


def sample_of(problem) -> str:
    """The scripted teacher's passing answer: the reference with a comment (so the trajectory's
    final version, rendered by ast.unparse, differs from it in formatting only)."""
    return "# my answer\n" + problem.reference


def run(problems, tmp_path: Path, fallback: bool):
    asked: Counter[int] = Counter()

    def respond(body: dict) -> str:
        i = next(i for i, p in enumerate(problems) if p.instruction.strip() in body["messages"][0]["content"])
        asked[i] += 1
        right = i == 0 and asked[i] > RIGHT_AFTER
        code = sample_of(problems[i]) if right else problems[i].signature + "\n    return None\n"
        return f"```python\n{code.rstrip()}\n```"

    with serving(respond) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        writer = make_teacher({"kind": "llm", "backend": "openai", "model": "scripted", "base_url": server.url,
                               "max_retries": 0, "cache_dir": None, "sampling": {"temperature": 0.7}}, SANDBOX)
        cfg = debugging.DebugConfig(trajectories_per_problem=3, max_rounds=3, workers=6, mode="mutate_samples",
                                    fallback_to_reference=fallback)
        teacher = debugging.teacher_for_mode(writer, cfg, SANDBOX)
        trajs, stats = debugging.run(problems, teacher, cfg, SANDBOX, resume_log=tmp_path / "log.jsonl")
        return trajs, stats, teacher.stats(), [r.body for r in server.requests], cfg


def test_trajectories_end_in_the_teachers_passing_sample(problems, tmp_path):
    trajs, stats, sampled, bodies, cfg = run(problems, tmp_path, fallback=False)
    first, second = problems
    assert {t.task_id for t in trajs} == {first.task_id}  # no sample of problem 1 passed: no trajectory
    assert len(trajs) == 3 and all(t.solved for t in trajs)
    for t in trajs:
        assert t.teacher == "mutation:sample:llm:openai:scripted"
        assert t.attempts[-1].code == ast.unparse(ast.parse(sample_of(first)))
        assert not t.attempts[0].outcome.passed and t.attempts[0].note.startswith("mutated sample 2 of llm:openai:scripted")
        assert all(not a.outcome.passed for a in t.attempts[:-1])
    assert len({t.attempts[0].code for t in trajs}) > 1, "each trajectory draws its own bugs"

    # the sample is drawn once per problem (3 trajectories share it), with sampling mode's seeds
    seeds = {p.task_id: [b["seed"] for b in bodies if p.instruction.strip() in b["messages"][0]["content"]]
             for p in problems}
    assert seeds[first.task_id] == debugging.sample_seeds(cfg, first.task_id)[:RIGHT_AFTER + 1]
    assert seeds[second.task_id] == debugging.sample_seeds(cfg, second.task_id)  # max_rounds + 1, no more
    assert sampled == {"samples": 6, "problems_with_passing_sample": 1, "problems_without_passing_sample": 1,
                       "first_pass_at": {"2": 1}}
    assert stats["by_teacher"] == {"mutation:sample:llm:openai:scripted": {"trajectories": 3, "solved": 3}}
    assert stats["no_session"] == 3

    pairs, _ = build_pairs({p.task_id: p for p in problems}, trajs, PairConfig())
    assert len(pairs) == 3 and {p.provenance["teacher"] for p in pairs} == {"mutation:sample:llm:openai:scripted"}
    assert all(p.rejected_spans or p.chosen_spans for p in pairs)


def test_fallback_mutates_the_problems_reference(problems, tmp_path):
    trajs, stats, _, _, _ = run(problems, tmp_path, fallback=True)
    second = problems[1]
    fallback = [t for t in trajs if t.task_id == second.task_id]
    assert len(fallback) == 3 and all(t.solved and t.teacher == "mutation:reference" for t in fallback)
    assert all(t.attempts[-1].code == ast.unparse(ast.parse(second.reference)) for t in fallback)
    assert stats["by_teacher"]["mutation:reference"] == {"trajectories": 3, "solved": 3}
