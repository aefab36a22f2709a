"""Where things are: the installed package (`PACKAGE`) and the project checkout the pipeline runs
in (`ROOT`: the folder holding conf/config.yaml, dvc.yaml and params.yaml)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def _project_root() -> Path:
    """The source checkout around an editable install, else the nearest folder from the working
    directory up that holds conf/config.yaml (a non-editable install run from a checkout), else
    the working directory."""
    for folder in (PACKAGE.parents[1], Path.cwd(), *Path.cwd().parents):
        if (folder / "conf" / "config.yaml").is_file():
            return folder
    return Path.cwd()


ROOT = _project_root()
