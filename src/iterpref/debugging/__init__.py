"""The refine loop: the teacher writes code, the sandbox runs the tests, the error goes back.

    v0 = teacher.write()                      round 0
    while v_r fails and r < max_rounds:       rounds 1..max_rounds
        v_{r+1} = teacher.fix(v_0..v_r)       the teacher sees every version and its error
    solved = the last version passed

``mode: sampling`` is the paper's baseline with the same call budget: up to ``max_rounds + 1``
independent first versions (fresh conversations, each with its own seed), stopping at the first
that passes. Its trajectories have the same shape (attempts in order, the last one passing when
solved), so the pairs stage builds pairs from them unchanged and the two modes compare.

``mode: mutate_samples`` is for a teacher that cannot repair its own code: per problem the teacher
draws up to ``max_rounds + 1`` independent samples (the seeds of ``sampling``'s first
trajectory), and the first that passes becomes the reference the offline mutation teacher injects
1 to ``min(3, max_rounds)`` bugs into and repairs one per round
(`iterpref.debugging.teachers.sample_mutation`). Every trajectory of a problem mutates the same
sample, each with its own bugs; ``fallback_to_reference`` mutates the problem's reference where
no sample passes. A trajectory's ``teacher`` names the code it mutated.

When the teacher cannot write a version (an LLM teacher's request failed for good, or its
reply held no code: `iterpref.debugging.teachers.TeacherError`), the trajectory ends there, unsolved, with
the fault recorded in ``teacher_fault``; it keeps the versions written before, and gives no pair.
The run goes on, and its statistics count the faults by cause; when every trajectory ended so
before its first version without a reply (the teacher does not answer at all: every request failed),
the run fails (`TeacherUnavailable`).

Trajectories are appended to a resume log as they finish, so an interrupted run picks up
where it stopped; the log is keyed by a hash of everything that shapes a trajectory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from tqdm import tqdm

from iterpref.config.fields import spec
from iterpref.debugging.teachers import MutationTeacher, Teacher, TeacherError, TeacherUnavailable
from iterpref.debugging.teachers.sample_mutation import SampleMutationTeacher
from iterpref.records import (
    Attempt,
    Problem,
    RecordError,
    TeacherFault,
    Trajectory,
    append_jsonl,
    config_hash,  # noqa: F401 (public here too: stages/debug.py keys its resume log)
    from_dict,
)
from iterpref.sandbox import SandboxConfig, run_unittest

REPLIED = ("empty_reply", "no_code")  # fault causes of a teacher that answered, with no code
Mode = Literal["debugging", "sampling", "mutate_samples"]


@dataclass
class DebugConfig:
    """How trajectories are collected.

    Attributes:
        trajectories_per_problem: independent debugging runs per problem (different seeds).
        max_rounds: refinement rounds after the first version (paper: 5); a trajectory still
            failing after them is kept as unsolved (it gives no pair).
        seed: base seed; each trajectory's seed derives from it, the task id and its index.
        workers: trajectories run concurrently (threads; each waits on sandbox or API calls).
        mode: ``debugging`` (the teacher fixes its last version from the test error),
            ``sampling`` (independent samples, the same ``max_rounds + 1`` calls at most) or
            ``mutate_samples`` (bugs injected into the teacher's first passing sample of the
            problem, up to ``max_rounds + 1`` samples, and repaired one per round).
        fallback_to_reference: in ``mutate_samples`` mode, mutate the problem's reference
            solution where none of the teacher's samples passes (else that problem gives no
            trajectory).
    """

    trajectories_per_problem: int = spec(2, ge=1)
    max_rounds: int = spec(5, ge=1)
    seed: int = 0
    workers: int = spec(2, ge=1)
    mode: Mode = "debugging"
    fallback_to_reference: bool = False

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise ValueError(f"debug.mode: unknown {self.mode!r}; expected one of {list(get_args(Mode))}")


def trajectory_seed(base: int, task_id: str, k: int) -> int:
    """A stable per-trajectory seed (independent of run order and of Python's hash salt)."""
    return int(hashlib.sha256(f"{base}:{task_id}:{k}".encode()).hexdigest()[:8], 16)


def sample_seeds(cfg: DebugConfig, task_id: str) -> list[int]:
    """The seeds of ``sampling`` mode's samples in the first trajectory of ``task_id``."""
    first = trajectory_seed(cfg.seed, task_id, 0)
    return [first] + [trajectory_seed(first, task_id, i) for i in range(1, cfg.max_rounds + 1)]


def teacher_for_mode(teacher: Teacher, cfg: DebugConfig, sandbox: SandboxConfig) -> Teacher:
    """The teacher the trajectories ask: in ``mutate_samples`` mode the mutation teacher over
    ``teacher``'s passing samples, else ``teacher`` itself."""
    if cfg.mode != "mutate_samples":
        return teacher
    mutation = MutationTeacher(sandbox=sandbox, max_mutations=min(3, cfg.max_rounds))
    return SampleMutationTeacher(teacher, mutation, lambda task_id: sample_seeds(cfg, task_id), sandbox,
                                 fallback_to_reference=cfg.fallback_to_reference)


def debug_one(problem: Problem, teacher: Teacher, k: int, cfg: DebugConfig, sandbox: SandboxConfig,
              provenance: dict) -> Trajectory | None:
    """One trajectory for ``problem``; None when the teacher cannot start one."""
    seed = trajectory_seed(cfg.seed, problem.task_id, k)
    session = teacher.open(problem, seed)
    if session is None:
        return None
    attempts: list[Attempt] = []
    fault = None
    try:
        code, note = session.write()
        attempts.append(Attempt(round=0, code=code, outcome=run_unittest(code, problem.tests, sandbox), note=note))
        while not attempts[-1].outcome.passed and len(attempts) <= cfg.max_rounds:
            if cfg.mode == "sampling":  # a fresh conversation, its own seed: an independent sample
                session = teacher.open(problem, trajectory_seed(seed, problem.task_id, len(attempts)))
                if session is None:
                    break
                code, note = session.write()
            else:
                code, note = session.fix(attempts)
            outcome = run_unittest(code, problem.tests, sandbox)
            attempts.append(Attempt(round=len(attempts), code=code, outcome=outcome, note=note))
    except TeacherError as err:
        fault = TeacherFault(round=len(attempts), cause=err.cause, detail=str(err))
    return Trajectory(
        trajectory_id=f"{problem.task_id}#{k}", task_id=problem.task_id,
        teacher=getattr(session, "teacher_name", teacher.name),
        seed=seed, attempts=attempts, solved=bool(attempts) and attempts[-1].outcome.passed,
        provenance=provenance, teacher_fault=fault,
    )


def _load_resume(path: Path) -> dict[str, Trajectory]:
    """Trajectories already in the resume log; a line cut short by a crash ends the log there."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    done, good = {}, []
    for line in text.splitlines():
        try:
            traj = from_dict(Trajectory, json.loads(line))
        except (json.JSONDecodeError, RecordError):
            print(f"{path}: dropping a damaged line and everything after it")
            break
        done[traj.trajectory_id] = traj
        good.append(line + "\n")
    if "".join(good) != text:  # also a whole last record cut before its newline: appends would glue on
        path.write_text("".join(good), encoding="utf-8")
    return done


def run(problems: list[Problem], teacher: Teacher, cfg: DebugConfig, sandbox: SandboxConfig,
        resume_log: str | os.PathLike, provenance: dict | None = None) -> tuple[list[Trajectory], dict]:
    """Debug every problem ``cfg.trajectories_per_problem`` times.

    Returns the trajectories in (problem, index) order and counts of what happened
    (``teacher_faults``: trajectories ended by a teacher fault, by cause). Finished trajectories
    found in ``resume_log`` are reused; new ones are appended to it.
    """
    resume_log = Path(resume_log)
    done = _load_resume(resume_log)
    jobs = [(p, k) for p in problems for k in range(cfg.trajectories_per_problem)]
    todo = [(p, k) for p, k in jobs if f"{p.task_id}#{k}" not in done]
    provenance = dict(provenance or {})
    no_session = 0
    with (tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="debug trajectories") as bar,
          ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool):
        futures = [pool.submit(debug_one, p, teacher, k, cfg, sandbox, provenance) for p, k in todo]
        for fut in as_completed(futures):  # log each as it finishes: a kill loses none that finished
            traj = fut.result()
            bar.update(1)
            if traj is None:
                no_session += 1
                continue
            append_jsonl(resume_log, traj)
            done[traj.trajectory_id] = traj
    ordered = [done[f"{p.task_id}#{k}"] for p, k in jobs if f"{p.task_id}#{k}" in done]
    if ordered and all(t.teacher_fault and not t.attempts and t.teacher_fault.cause not in REPLIED for t in ordered):
        resume_log.unlink(missing_ok=True)  # nothing in it is worth resuming: a rerun asks again
        causes = dict(Counter(t.teacher_fault.cause for t in ordered))
        raise TeacherUnavailable(f"the teacher wrote no version in any of the {len(ordered)} trajectories "
                                 f"(faults: {causes}; the first: {ordered[0].teacher_fault.detail}); "
                                 f"check that it answers, then run the stage again")
    stats = {
        "jobs": len(jobs),
        "resumed": len(jobs) - len(todo),
        "no_session": no_session,
        "trajectories": len(ordered),
        "solved": sum(t.solved for t in ordered),
        "sandbox_runs": sum(len(t.attempts) for t in ordered),
        "teacher_faults": dict(sorted(Counter(t.teacher_fault.cause for t in ordered if t.teacher_fault).items())),
        "by_teacher": {name: {"trajectories": sum(t.teacher == name for t in ordered),
                              "solved": sum(t.solved and t.teacher == name for t in ordered)}
                       for name in sorted({t.teacher for t in ordered})},
        **budget_stats(ordered, problems, cfg),
    }
    return ordered, stats


def budget_stats(trajectories: list[Trajectory], problems: list[Problem], cfg: DebugConfig) -> dict:
    """What the teacher calls bought, comparable between modes: the mode, the calls made (one per
    version), and the share of tasks solved (by any trajectory) within 1..max_rounds+1 calls."""
    first_pass: dict[str, int] = {}
    for t in trajectories:
        if t.solved:
            calls = len(t.attempts)
            first_pass[t.task_id] = min(calls, first_pass.get(t.task_id, calls))
    n = len(problems) or 1
    return {
        "mode": cfg.mode,
        "teacher_calls": sum(len(t.attempts) for t in trajectories),
        "tasks_solved": len(first_pass),
        "tasks_solved_within_calls": {str(c): round(sum(v <= c for v in first_pass.values()) / n, 4)
                                      for c in range(1, cfg.max_rounds + 2)},
    }
