"""The refine loop with the real mutation teacher and the real sandbox on seed problems."""

from __future__ import annotations

import ast
import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from iterpref import debugging
from iterpref.debugging import DebugConfig, config_hash, debug_one, trajectory_seed
from iterpref.debugging.teachers import MutationTeacher
from iterpref.problems import load_seed
from iterpref.records import Problem, Trajectory, read_jsonl, to_dict
from iterpref.sandbox import SandboxConfig, run_unittest

SEED = Path(__file__).resolve().parents[1] / "data" / "seed" / "problems.jsonl"
SANDBOX = SandboxConfig(timeout_s=5.0, cpu_s=5, workers=2)
CFG = DebugConfig(trajectories_per_problem=2, max_rounds=5, seed=0, workers=2)


@pytest.fixture(autouse=True)
def _quiet_rlimit_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "iterpref.sandbox", RuntimeWarning)
        yield


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_seed(SEED, limit=3)


def teacher(**kw) -> MutationTeacher:
    return MutationTeacher(sandbox=SANDBOX, **kw)


def run(problems, cfg, log, t=None, provenance=None):
    return debugging.run(problems, t or teacher(), cfg, SANDBOX, resume_log=log, provenance=provenance)


def without_durations(trajs: list[Trajectory]) -> list[dict]:
    """Trajectories as dicts with wall times zeroed (the only thing that varies between runs)."""
    out = []
    for t in trajs:
        d = to_dict(t)
        for a in d["attempts"]:
            a["outcome"]["duration_s"] = 0.0
        out.append(d)
    return out


@pytest.fixture(scope="module")
def first_run(problems, tmp_path_factory):
    log = tmp_path_factory.mktemp("debug") / "resume.jsonl"
    trajs, stats = run(problems, CFG, log, provenance={"params_hash": "abc"})
    return trajs, stats, log


# ----------------------------------------------------------------------------- trajectories


def test_stats_and_order(problems, first_run):
    trajs, stats, _ = first_run
    jobs = len(problems) * CFG.trajectories_per_problem
    assert stats["jobs"] == jobs and stats["resumed"] == 0
    assert stats["trajectories"] + stats["no_session"] == jobs
    assert stats["trajectories"] >= len(problems)  # the seed problems all have catchable mutants
    assert stats["solved"] == sum(t.solved for t in trajs)
    assert stats["sandbox_runs"] == sum(len(t.attempts) for t in trajs)
    expected = [f"{p.task_id}#{k}" for p in problems for k in range(CFG.trajectories_per_problem)]
    ids = [t.trajectory_id for t in trajs]
    assert ids == [i for i in expected if i in ids]  # (problem, index) order


def test_trajectory_shape(problems, first_run):
    by_id = {p.task_id: p for p in problems}
    trajs, _, _ = first_run
    for t in trajs:
        p = by_id[t.task_id]
        assert t.teacher == "mutation"
        assert t.provenance == {"params_hash": "abc"}
        assert t.seed == trajectory_seed(CFG.seed, t.task_id, int(t.trajectory_id.split("#")[1]))
        assert [a.round for a in t.attempts] == list(range(len(t.attempts)))  # consecutive from 0
        assert not t.attempts[0].outcome.passed  # starts failing
        assert t.attempts[0].note.startswith("injected")
        assert all(not a.outcome.passed for a in t.attempts[:-1])  # the loop stops at the first pass
        assert t.solved == t.attempts[-1].outcome.passed
        assert len(t.attempts) <= CFG.max_rounds + 1
        if t.solved:
            # the mutation teacher ends on the rendered reference
            assert t.attempts[-1].code == ast.unparse(ast.parse(p.reference))
            assert t.attempts[-1].outcome.status == "passed"
        else:
            assert len(t.attempts) == CFG.max_rounds + 1
        # every repair changes the code
        codes = [a.code for a in t.attempts]
        assert len(set(codes)) == len(codes)
    # with 1-3 bugs and 5 rounds, the mutation teacher always finishes
    assert all(t.solved for t in trajs)


def test_outcomes_are_real_sandbox_outcomes(problems, first_run):
    by_id = {p.task_id: p for p in problems}
    trajs, _, _ = first_run
    checked = 0
    for t in trajs:
        for a in t.attempts:
            again = run_unittest(a.code, by_id[t.task_id].tests, SANDBOX)
            fields = ("passed", "status", "tests_run", "failures", "errors", "error_type")
            assert [getattr(again, f) for f in fields] == [getattr(a.outcome, f) for f in fields], \
                (t.trajectory_id, a.round)
            if not a.outcome.passed:
                assert a.outcome.error_type and a.outcome.traceback
                checked += 1
    assert checked >= len(trajs)


def test_two_trajectories_of_a_problem_differ(first_run):
    trajs, _, _ = first_run
    by_task: dict[str, list[Trajectory]] = {}
    for t in trajs:
        by_task.setdefault(t.task_id, []).append(t)
    seeds = [t.seed for t in trajs]
    assert len(set(seeds)) == len(seeds)
    # different seeds give different mutants on at least one problem
    assert any(len({ts[0].attempts[0].code, ts[-1].attempts[0].code}) == 2 for ts in by_task.values() if len(ts) > 1)


@pytest.mark.parametrize("max_rounds", [0, 1])
def test_max_rounds_respected(problems, tmp_path, max_rounds):
    cfg = dataclasses.replace(CFG, max_rounds=max_rounds)
    trajs, stats = run(problems, cfg, tmp_path / "log.jsonl")
    assert trajs
    for t in trajs:
        assert len(t.attempts) <= max_rounds + 1
        assert t.solved == t.attempts[-1].outcome.passed
        if not t.solved:
            assert len(t.attempts) == max_rounds + 1
    if max_rounds == 0:
        # a single attempt, the mutant, which fails by construction
        assert all(len(t.attempts) == 1 and not t.solved for t in trajs)
        assert stats["solved"] == 0 and stats["sandbox_runs"] == len(trajs)


def test_debug_one_max_rounds_zero_returns_a_single_unsolved_attempt(problems):
    t = debug_one(problems[0], teacher(), 0, dataclasses.replace(CFG, max_rounds=0), SANDBOX, {})
    assert t is not None
    assert len(t.attempts) == 1 and t.attempts[0].round == 0
    assert not t.solved and not t.attempts[0].outcome.passed


def test_debug_one_without_a_session_returns_none(tmp_path):
    broken = Problem(task_id="x/1", instruction="x", signature="def f():", entry_point="f",
                     reference="def f():\n    return 1\n",
                     tests="import unittest\nfrom solution import f\n\nclass T(unittest.TestCase):\n"
                           "    def test(self):\n        self.assertEqual(f(), 2)\n")  # the reference fails
    assert debug_one(broken, teacher(), 0, CFG, SANDBOX, {}) is None
    # and run() counts it instead of writing anything
    trajs, stats = debugging.run([broken], teacher(), CFG, SANDBOX, resume_log=tmp_path / "log.jsonl")
    assert trajs == [] and stats["no_session"] == CFG.trajectories_per_problem
    assert not (tmp_path / "log.jsonl").exists()


def test_same_config_same_trajectories(problems, first_run, tmp_path):
    trajs, _, _ = first_run
    again, _ = run(problems, dataclasses.replace(CFG, workers=1), tmp_path / "other.jsonl",
                   provenance={"params_hash": "abc"})
    assert without_durations(again) == without_durations(trajs)


def test_another_base_seed_gives_other_trajectories(problems, first_run, tmp_path):
    trajs, _, _ = first_run
    other, _ = run(problems, dataclasses.replace(CFG, seed=1), tmp_path / "other.jsonl",
                   provenance={"params_hash": "abc"})
    assert [t.seed for t in other] != [t.seed for t in trajs]
    assert without_durations(other) != without_durations(trajs)


def test_trajectory_seed_is_stable():
    assert trajectory_seed(0, "seed/001", 0) == trajectory_seed(0, "seed/001", 0)
    assert len({trajectory_seed(b, t, k) for b in (0, 1) for t in ("a", "b") for k in (0, 1)}) == 8
    # sha256-based, so independent of PYTHONHASHSEED: a fixed value
    import hashlib
    assert trajectory_seed(0, "seed/001", 1) == int(hashlib.sha256(b"0:seed/001:1").hexdigest()[:8], 16)


def test_config_hash():
    a = config_hash({"kind": "mutation"}, CFG, SANDBOX, ["seed/001"])
    assert a == config_hash({"kind": "mutation"}, CFG, SANDBOX, ["seed/001"])
    assert a != config_hash({"kind": "mutation"}, dataclasses.replace(CFG, max_rounds=4), SANDBOX, ["seed/001"])
    assert a != config_hash({"kind": "mutation"}, CFG, SANDBOX, ["seed/002"])
    assert len(a) == 12


# ----------------------------------------------------------------------------- resume


class CountingRunner:
    """The real sandbox runner, counting the checks the teacher makes."""

    def __init__(self):
        self.calls = 0

    def __call__(self, code, tests, config=None):
        self.calls += 1
        return run_unittest(code, tests, config)


def test_resume_recomputes_nothing(problems, first_run, tmp_path):
    trajs, stats, log = first_run
    copy = tmp_path / "resume.jsonl"
    copy.write_text(log.read_text())
    before = copy.read_text()
    runner = CountingRunner()
    again, stats2 = run(problems, CFG, copy, t=teacher(runner=runner), provenance={"params_hash": "abc"})
    assert stats2["resumed"] == stats2["jobs"] == stats["jobs"]
    assert runner.calls == 0  # the teacher never opened a session
    assert again == trajs  # identical, durations included: they come from the log
    assert copy.read_text() == before  # nothing appended
    assert {k: v for k, v in stats2.items() if k != "resumed"} == {k: v for k, v in stats.items() if k != "resumed"}


def test_resume_log_holds_every_trajectory(first_run):
    trajs, _, log = first_run
    assert sorted(t.trajectory_id for t in read_jsonl(log, Trajectory)) == sorted(t.trajectory_id for t in trajs)


def test_truncated_last_line_is_dropped_and_recomputed(problems, first_run, tmp_path, capsys):
    trajs, stats, log = first_run
    lines = log.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])["trajectory_id"]
    damaged = tmp_path / "resume.jsonl"
    damaged.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a crash mid-write
    runner = CountingRunner()
    again, stats2 = run(problems, CFG, damaged, t=teacher(runner=runner), provenance={"params_hash": "abc"})
    assert "dropping a damaged line" in capsys.readouterr().out
    assert stats2["resumed"] == stats["jobs"] - 1
    assert runner.calls > 0  # one trajectory was recomputed
    assert without_durations(again) == without_durations(trajs)
    # the log is whole again: every line parses, the recomputed trajectory last
    back = read_jsonl(damaged, Trajectory)
    assert len(back) == stats["trajectories"] and back[-1].trajectory_id == last


def test_last_line_without_newline_is_kept_and_the_log_stays_valid(problems, first_run, tmp_path):
    """A crash between the JSON and its newline: the record is whole and is kept, and the next
    append must not glue onto it."""
    trajs, stats, log = first_run
    lines = log.read_text().splitlines(keepends=True)
    damaged = tmp_path / "resume.jsonl"
    damaged.write_text("".join(lines[:-2]) + lines[-2].rstrip("\n"))  # last trajectory missing entirely
    again, stats2 = run(problems, CFG, damaged, provenance={"params_hash": "abc"})
    assert stats2["resumed"] == stats["jobs"] - 1
    assert without_durations(again) == without_durations(trajs)
    assert len(read_jsonl(damaged, Trajectory)) == stats["trajectories"]
