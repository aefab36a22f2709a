"""A run's files as one experiment left them: the workspace, or a git revision or DVC experiment
read through DVC's file system (git-tracked files from the commit, DVC outputs from the cache that
commit's dvc.lock names), so looking at another experiment never changes the workspace.

    RunFiles(".", "beta02").read_json("reports/eval/target_dpo/humaneval.json")
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from iterpref.cli import UserError


class RunFiles:
    """The files of one run: ``rev`` None is the workspace under ``repo``; otherwise a git revision
    (branch, tag, commit) or a DVC experiment name of the repository ``repo``."""

    def __init__(self, repo: str | Path = ".", rev: str | None = None):
        self.repo = Path(repo)
        self.rev = rev
        self._fs = None
        if rev is not None:
            from dvc.api import DVCFileSystem

            try:
                self._fs = DVCFileSystem(str(self.repo), rev=rev)
                self._fs.repo  # opens the repository at rev now: an unknown revision fails here  # noqa: B018
            except Exception as err:  # dvc raises several types here (RevError, NotDvcRepoError, SCMError)
                raise UserError(f"{rev!r} is neither a git revision nor a DVC experiment of {self.repo.resolve()} "
                                f"({type(err).__name__}: {err})") from None

    @property
    def label(self) -> str:
        """``rev``, or ``workspace``."""
        return self.rev or "workspace"

    def exists(self, path: str | Path) -> bool:
        if self._fs is None:
            return (self.repo / path).exists()
        return self._fs.exists(PurePosixPath(path).as_posix())

    def read_text(self, path: str | Path) -> str:
        """The file's text; a missing file is a `FileNotFoundError` naming the revision."""
        if self._fs is None:
            return (self.repo / path).read_text()
        if not self.exists(path):
            raise FileNotFoundError(2, f"no such file at {self.label}", str(path))
        return self._fs.read_text(PurePosixPath(path).as_posix())

    def read_json(self, path: str | Path):
        return json.loads(self.read_text(path))

    def stems(self, folder: str | Path, suffix: str = ".json") -> list[str]:
        """The names, without ``suffix``, of the files in ``folder`` that end in it (sorted; none when
        the folder is missing)."""
        if self._fs is None:
            names = [p.name for p in (self.repo / folder).glob(f"*{suffix}")] if (self.repo / folder).is_dir() else []
        else:
            top = PurePosixPath(folder).as_posix()
            names = ([PurePosixPath(p).name for p in self._fs.ls(top, detail=False)]
                     if self._fs.isdir(top) else [])
        return sorted(n[:-len(suffix)] for n in names if n.endswith(suffix))
