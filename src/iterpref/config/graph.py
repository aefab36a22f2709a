"""The code each pipeline stage runs: its script and every iterpref module it imports,
transitively, plus the files the code runs or reads by path (the sandbox's judge program).

dvc.yaml must list all of them as the stage's deps, or an edit to one of them leaves a stale
cached result: `missing` says which are absent. Imports inside functions count (they run), and
so does every module a package loads by name at run time (`DYNAMIC`).

    python -m iterpref.config.graph          # each stage's code deps, and what dvc.yaml misses
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

from iterpref.cli import ArgumentParser, command
from iterpref.config.paths import ROOT

SRC = ROOT / "src"

# Modules that load others by name or run a file by path, and what they load or run.
DYNAMIC: dict[str, list[str]] = {
    # the sandbox runs judge.py as a program inside the confined process
    "iterpref.sandbox.unittests": ["src/iterpref/sandbox/judge.py"],
    # the official evaluators' wrapper programs, copied into the sandbox's work folder and run there
    "iterpref.evaluation.evalplus": ["src/iterpref/sandbox/evalplus_run.py"],
    "iterpref.evaluation.bigcodebench": ["src/iterpref/sandbox/bigcodebench_run.py"],
    # problem sources are imported by their config name (problems.build.SOURCES)
    "iterpref.problems.build": [f"iterpref.problems.{s}" for s in ("seed", "codeio", "synthesize", "hf")],
    # benchmarks are imported by their registry name
    "iterpref.evaluation.registry": ["iterpref.evaluation.humaneval", "iterpref.evaluation.mbpp",
                                     "iterpref.evaluation.evalplus", "iterpref.evaluation.bigcodebench"],
}


# Modules whose imports inside functions only check params (a wrong value stops the stage before it
# writes anything) and never change an output: only their module-level imports count.
CHECK_ONLY = {"iterpref.config.schema"}


def module_file(name: str) -> Path | None:
    """The source file of iterpref module ``name`` (a package's ``__init__.py``), or None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, package: str | None, top_level_only: bool = False) -> set[str]:
    """The iterpref modules a file imports anywhere in it, or only at module level (absolute
    and relative imports; ``from a import b`` yields ``a.b`` when that is a module, else ``a``)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = (package or "").split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if module_file(sub) else base)
    return {m for m in found if m == "iterpref" or m.startswith("iterpref.")}


def closure(script: Path) -> set[Path]:
    """Every repository file the script's code depends on: itself, the iterpref modules it
    imports transitively (with their packages' ``__init__.py``) and what `DYNAMIC` adds."""
    files: set[Path] = {script}
    todo = list(imports_of(script, None))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        package = name if path.name == "__init__.py" else ".".join(parts[:-1])
        todo.extend(imports_of(path, package, top_level_only=name in CHECK_ONLY))
        for extra in DYNAMIC.get(name, []):
            if extra.endswith(".py"):
                files.add(ROOT / extra)
            else:
                todo.append(extra)
    return {f.resolve() for f in files}


def stage_scripts(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, tuple[Path, list[str]]]:
    """Each stage (foreach/matrix groups by their group name): its script and its deps."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = body["cmd"].split()[1]
        out[name] = (ROOT / script, [str(d) for d in body.get("deps", [])])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    """Whether a dep entry (a file or a folder) covers ``path``."""
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def missing(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage -> the code files its deps do not cover (empty lists left out)."""
    out = {}
    for stage, (script, deps) in stage_scripts(dvc_yaml).items():
        gaps = sorted(p.relative_to(ROOT).as_posix() for p in closure(script) if not covered(p, deps))
        if gaps:
            out[stage] = gaps
    return out


def surplus(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage -> the src/ and stages/ files its deps cover that its code never loads (a needless
    re-run when they change)."""
    out = {}
    for stage, (script, deps) in stage_scripts(dvc_yaml).items():
        needed = closure(script)
        extra = []
        for d in deps:
            target = ROOT / d
            if not d.startswith(("src/", "stages/")):
                continue
            files = [target] if target.is_file() else [p for p in target.rglob("*.py") if "__pycache__" not in p.parts]
            extra += [p.relative_to(ROOT).as_posix() for p in files if p.resolve() not in needed]
        if extra:
            out[stage] = sorted(extra)
    return out


def data_gaps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage -> the data folders (`iterpref.config.sections`: the folder a section's files stay
    in) of the params it reads that its deps do not cover (empty lists left out)."""
    from iterpref.config.sections import folders

    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = [str(d) for d in body.get("deps", [])]
        read = [str(p) for p in body.get("params", [])]
        # a params entry reads a file key when it is that key, a section above it or a key below it
        need = {folder for key, folder in folders().items()
                for p in read if key == p or key.startswith(p + ".") or p.startswith(key + ".")}
        gaps = sorted(f for f in need if not any(d == f or d.startswith(f + "/") for d in deps))
        if gaps:
            out[name] = gaps
    return out


@command
def main(argv: list[str] | None = None) -> None:
    ArgumentParser(description="Print each dvc.yaml stage's code deps (its import closure); exit 1 when "
                                        "dvc.yaml misses one, naming the stage and the file.").parse_args(argv)
    for stage, (script, _) in stage_scripts().items():
        files = sorted(p.relative_to(ROOT).as_posix() for p in closure(script))
        print(f"{stage}: {' '.join(files)}")
    gaps, extra, folders = missing(), surplus(), data_gaps()
    for stage, files in {**gaps, **folders}.items():
        print(f"MISSING from {stage}'s deps: {', '.join(files)}", file=sys.stderr)
    for stage, files in extra.items():
        print(f"NOT LOADED by {stage}: {', '.join(files)}", file=sys.stderr)
    sys.exit(1 if gaps or folders else 0)


if __name__ == "__main__":
    main()
