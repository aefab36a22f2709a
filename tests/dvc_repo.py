"""Helpers for end-to-end tests that run real DVC in a copy of the repository."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import processes
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]

# the smoke experiment made cheaper still: 2 tasks per benchmark, one training step of 4 pairs
CHEAP = ["experiment=smoke", "eval.limit=2", "train.common.max_pairs=4"]
# What the modules that run the smoke experiment share before their first training
# (tests/test_pipeline.py, tests/test_sweeps.py, tests/test_sweeps_optuna.py, tests/test_remote.py):
# `seed_cache` runs it once per suite and they restore it from DVC's run cache.
# tests/test_debug_kill.py runs these stages itself: that the debug stage runs is what it tests.
SEED_STAGES = ["model", "synthesize", "debug", "pairs", "reference_logprobs", "evaluate_reference@humaneval",
               "evaluate_reference@mbpp"]


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    """Run ``cmd``; fail the test with its output unless it exits 0. Returns stdout + stderr."""
    proc = processes.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def ran_stages(log: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` log says it ran (not those restored from cache)."""
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}


def restored_stages(log: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` log says it restored from the run cache instead of running."""
    return {line.split("'")[1] for line in log.splitlines()
            if line.startswith("Stage '") and "is cached - skipping run" in line}


def make_repo(dst: Path) -> tuple[Path, dict]:
    """A git repository at ``dst`` holding the working tree's files, as a fresh clone would;
    returns it and the environment to run DVC in (W&B offline, no key)."""
    files = processes.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    # PYTHONPATH: the stages import the copy's package, not the editable install's working tree
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(dst / "src"),
           "WANDB_MODE": "offline", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "iterpref-test", "GIT_AUTHOR_EMAIL": "test@localhost",
           "GIT_COMMITTER_NAME": "iterpref-test", "GIT_COMMITTER_EMAIL": "test@localhost"}
    for var in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_RUN_GROUP", "WANDB_PROJECT", "DVC_EXP_NAME", "DVC_ROOT"):
        env.pop(var, None)
    sh(["git", "init", "-q"], dst, env)
    sh(["git", "add", "-A"], dst, env)
    sh(["git", "commit", "-qm", "init"], dst, env)
    return dst, env


def seed_cache(repo: Path, shared: Path) -> None:
    """Fill ``repo``'s DVC cache with the outputs and run-cache entries of `SEED_STAGES` under
    `CHEAP`, computed once in ``shared`` (a folder all the suite's processes see; the first to
    get its lock computes, the others wait) and hard-linked from there (DVC never writes a cache
    file twice). A stage whose deps and params are the seed's is then restored, not run."""
    cache = shared / "cache"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").exists():
            seed, seed_env = make_repo(shared / "repo")
            sh([sys.executable, "-m", "dvc", "exp", "run", *[a for o in CHEAP for a in ("-S", o)], *SEED_STAGES],
               seed, seed_env)
            shutil.copytree(seed / ".dvc/cache", cache, copy_function=os.link)
            (shared / "done").touch()
    shutil.copytree(cache, repo / ".dvc/cache", copy_function=os.link, dirs_exist_ok=True)


def bare_repo(root: Path) -> dict:
    """An empty git repository (branch ``main``) with DVC initialised at ``root``; returns the
    environment to run git and DVC in there (no analytics, a committer, HOME beside the repository)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "HOME": str(root.parent),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost"}
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    return env
