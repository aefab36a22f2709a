"""Whether the committed dvc.lock (and so reports/) is HEAD's: the stages whose code, data or
params in the working tree differ from what the lock recorded.

A fresh clone has no DVC cache, so `dvc status` also reports every output and every dependency
that another stage produces as missing; those say nothing about staleness and are skipped. What
is left is a changed file that git tracks (a stage script, a module, a seed file) or a changed
parameter: a stage whose committed result was computed by other code or settings.

    python -m iterpref.config.lock      # or: make lock-check; exit 1 when a stage is stale
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from iterpref.cli import ArgumentParser, command
from iterpref.config.paths import ROOT


def tracked(root: Path) -> set[str]:
    """The files git tracks under ``root``."""
    out = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def stale(status: dict, tracked_files: set[str]) -> dict[str, list[str]]:
    """Stage -> what changed, from `dvc status --json`: modified git-tracked deps (a file or a
    folder holding one) and changed params."""
    out: dict[str, list[str]] = {}
    for stage, entries in status.items():
        reasons = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # a params file: {key: new|modified|deleted}
                    reasons += [f"param {key} {what}" for key, what in change.items()]
                elif change == "modified" and (path in tracked_files
                                               or any(f.startswith(path.rstrip("/") + "/") for f in tracked_files)):
                    reasons.append(f"{path} modified")
        if reasons:
            out[stage] = reasons
    return out


@command
def main(argv: list[str] | None = None) -> None:
    ArgumentParser(description="List the stages whose committed dvc.lock is stale against the code, data "
                                        "or params in the working tree; exit 1 when any is.").parse_args(argv)
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dvc status failed: {proc.stderr.strip()}")
    found = stale(json.loads(proc.stdout or "{}"), tracked(ROOT))
    for stage, reasons in found.items():
        print(f"{stage}: {'; '.join(reasons)}")
    if found:
        raise SystemExit(f"{len(found)} stage(s) in dvc.lock are stale: run `make run` and commit dvc.lock and reports/")
    print("dvc.lock is up to date with the code, data and params of every stage")


if __name__ == "__main__":
    main()
