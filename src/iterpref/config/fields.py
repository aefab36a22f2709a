"""The base of every config dataclass: `spec` fields with ranges, `ConfigError`, `require_under`
for paths that must stay inside a data folder, and `build`, which turns a params section into its
dataclass. It imports nothing of iterpref's but `cli`, so every package can use it; the check of a
whole composition (`iterpref.config.schema`) sits at the top and reads these fields' metadata.
"""

from __future__ import annotations

import dataclasses
import posixpath
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from iterpref.cli import UserError

MISSING = dataclasses.MISSING
T = TypeVar("T")


class ConfigError(ValueError, UserError):
    """One or more invalid keys of a composed configuration, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration: " + problems[0] if len(problems) == 1 else
                         "invalid configuration:\n  " + "\n  ".join(problems))


def spec(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, ge: float | None = None,
         gt: float | None = None, le: float | None = None, lt: float | None = None, doc: str = "") -> Any:
    """A dataclass field with a range that the config check enforces (None values are not range-checked)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"bounds": bounds, "doc": doc})


def require_under(path: str | None, folder: str, key: str) -> None:
    """Raise ValueError unless ``path`` (None passes) is a relative path that stays inside ``folder``
    once normalised (``data/seed/../x`` is outside ``data/seed``): a stage that reads it depends on
    that folder in dvc.yaml, so DVC sees an edit to the file."""
    if path is None:
        return
    norm = posixpath.normpath(path)
    if posixpath.isabs(norm) or not (norm == folder or norm.startswith(folder.rstrip("/") + "/")):
        raise ValueError(f"{key}: {path!r} is outside {folder}/; put the file there so DVC tracks it "
                         f"(the stage that reads it depends on {folder}/ in dvc.yaml)")


def hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved type hints."""
    return typing.get_type_hints(cls)


def build(cls: type[T], section: dict[str, Any] | None, where: str | None = None) -> T:
    """``cls(**section)`` with nested dataclass fields built from their mappings; with ``where``
    (the section's params key), unknown keys are a ValueError naming them."""
    section = dict(section or {})
    if where is not None:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ValueError(f"params.yaml: {where}: unknown key(s) {unknown}; {cls.__name__} takes {sorted(names)}")
    types_ = hints(cls)
    kwargs = {}
    for name, value in section.items():
        tp = types_[name]
        kwargs[name] = build(tp, value) if dataclasses.is_dataclass(tp) and isinstance(value, dict) else value
    return cls(**kwargs)
