"""Checking a composed configuration against the config dataclasses, before any stage runs.

Each params section has a dataclass next to the code that uses it (``TrainConfig`` in
training/recipe.py, ``SandboxConfig`` in sandbox/config.py, ...). Its type hints say what a key takes,
`spec` fields add a range or a set of choices, and its ``__post_init__`` checks what spans
several keys. `check` walks a composed params dict through them and returns every problem, each
naming the key, the value, what was expected and the conf/ file (or command-line override) the
value came from; `validate` raises them together as one `ConfigError`.

The same check runs in three places: when Hydra composes conf/ (the ``iterpref_check`` resolver
behind ``config_checked`` in conf/config.yaml, registered for DVC by hydra_plugins/), when
`iterpref.params.compose` composes, and when a stage loads params.yaml (`iterpref.params.load`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union

from iterpref.cli import UserError
from iterpref.config.fields import MISSING, ConfigError, build, hints, require_under

CROSS_KEY = object()  # the "value" of a problem that ``__post_init__`` found across keys

_OPS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


# ----------------------------------------------------------------------------- types


def describe(tp: Any) -> str:
    """A type hint as a reader would say it: ``float``, ``int or null``, ``one of ['a', 'b']``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, Sequence, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__}'s keys"
    if tp is Any:
        return "anything"
    return getattr(tp, "__name__", str(tp))


def _type_errors(tp: Any, value: Any, key: str, out: list[tuple[str, Any, str]]) -> None:
    """Append (key, value, expected) for every place ``value`` does not match ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return
    if tp is type(None):
        if value is not None:
            out.append((key, value, "null"))
        return
    if origin in (Union, types.UnionType):
        trials = []
        for arg in args:
            trial: list = []
            _type_errors(arg, value, key, trial)
            if not trial:
                return
            trials.append(trial)
        # a nested mismatch inside the one structural alternative that fits says more than "X or Y"
        fitting = [t for t, a in zip(trials, args) if _shape_fits(a, value)]
        out.extend(fitting[0] if len(fitting) == 1 else [(key, value, describe(tp))])
        return
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args if a == value):
            out.append((key, value, describe(tp)))
        return
    if origin in (list, Sequence, tuple):
        if not isinstance(value, list):
            out.append((key, value, describe(tp)))
            return
        for i, item in enumerate(value):
            _type_errors(args[0] if args else Any, item, f"{key}[{i}]", out)
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            out.append((key, value, "a mapping"))
            return
        if args:
            for k, v in value.items():
                _type_errors(args[1], v, f"{key}.{k}", out)
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            out.append((key, value, describe(tp)))
            return
        _dataclass_errors(tp, value, key, out)
        return
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        out.append((key, value, describe(tp)))


def _shape_fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the container shape of ``tp`` (mapping, list or scalar)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) or origin is dict or tp is dict:
        return isinstance(value, dict)
    if origin in (list, Sequence, tuple):
        return isinstance(value, list)
    return False



def _dataclass_errors(cls: type, section: dict, where: str, out: list[tuple[str, Any, str]], *,
                      skip: Sequence[str] = (), partial: bool = False) -> None:
    """Unknown keys, missing required keys (unless ``partial``), wrong types and values out of
    range; then, if the section is clean, what ``cls.__post_init__`` rejects."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types_ = hints(cls)
    before = len(out)
    for key in section:
        if key not in fields and key not in skip:
            out.append((f"{where}.{key}", section[key], f"unknown key; {cls.__name__} takes {sorted(fields)}"))
    for name, f in fields.items():
        full = f"{where}.{name}"
        if name not in section:
            if not partial and f.default is MISSING and f.default_factory is MISSING:
                out.append((full, None, f"a value ({describe(types_[name])}); the key is missing"))
            continue
        n = len(out)
        _type_errors(types_[name], section[name], full, out)
        if len(out) == n and section[name] is not None:
            for op, bound in f.metadata.get("bounds", {}).items():
                test, sign = _OPS[op]
                if not test(section[name], bound):
                    out.append((full, section[name], f"a value {sign} {bound}"))
    if len(out) == before and not partial:
        _post_init_errors(cls, {k: v for k, v in section.items() if k in fields}, where, out)


def _post_init_errors(cls: type, section: dict, where: str, out: list[tuple[str, Any, str]]) -> None:
    """What the dataclass's own ``__post_init__`` rejects (checks that span keys)."""
    if not hasattr(cls, "__post_init__"):
        return
    try:
        build(cls, section)
    except (ValueError, TypeError) as err:
        out.append((where, CROSS_KEY, str(err)))



# ----------------------------------------------------------------------------- the whole config


def _file_errors(value: str | list | None, folder: str, key: str, root: Path | None,
                 out: list[tuple[str, Any, str]]) -> None:
    """Each path of ``value`` (one, a list, or None) stays inside ``folder`` once normalised and,
    when the project ``root`` is known, names a file there (symlinks resolved: one cannot point out)."""
    for path in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        try:
            require_under(path, folder, key)
        except ValueError as err:
            out.append((key, CROSS_KEY, str(err)))
            continue
        if root is None:
            continue
        real = (root / path).resolve()
        if not real.is_file():
            out.append((key, CROSS_KEY, f"{key}: {path!r} is not a file (looked in {root})"))
        elif not real.is_relative_to((root / folder).resolve()):
            out.append((key, CROSS_KEY, f"{key}: {path!r} leads outside {folder}/ (a symlink to {real})"))


def _sections(root: Path | None = None) -> dict[str, Callable[[dict, str, list], None]]:
    """Each top-level params key (`sections.TOP`) and the check of its section; with the project
    ``root``, the files parameters name are checked too (they exist, inside their folder, parse)."""
    from iterpref.config import sections as registry
    from iterpref.config.sections import SOURCES, source_config

    ProblemsConfig, LaunchConfig = registry.section("problems").cls, registry.section("train").cls
    TrainConfig = registry.section("train.common").cls

    def problems(section, where, out):
        source = section.get("source")
        cls = source_config(source) if isinstance(source, str) else None
        if cls is None:
            out.append((f"{where}.source", source, f"one of {sorted(SOURCES)}"))
            return
        _dataclass_errors(ProblemsConfig, section, where, out, skip=[source])
        if source not in section:
            out.append((f"{where}.{source}", None, f"the settings of source {source!r}; the key is missing"))
        elif not isinstance(section[source], dict):
            out.append((f"{where}.{source}", section[source], "a mapping"))
        else:
            before = len(out)
            _dataclass_errors(cls, section[source], f"{where}.{source}", out)
            folder = registry.section(f"problems.{source}").folder
            for name in getattr(cls, "FILE_FIELDS", ()):
                _file_errors(section[source].get(name), folder, f"{where}.{source}.{name}", root, out)
            if len(out) == before and root is not None and hasattr(cls, "check_content"):
                try:  # the records parse: a bad line is found here, not after DVC removed the outputs
                    build(cls, section[source]).check_content(root)
                except (ValueError, UserError) as err:
                    out.append((f"{where}.{source}", CROSS_KEY, str(err).replace(f"{root}/", "")))

    def teacher(section, where, out):
        kind = section.get("kind")
        cls = registry.TEACHER_KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            out.append((f"{where}.kind", kind, f"one of {sorted(registry.TEACHER_KINDS)}"))
            return
        _dataclass_errors(cls, section, where, out)

    def train(section, where, out):
        launch = {f.name for f in dataclasses.fields(LaunchConfig)}
        for key in section:
            if key not in {"common", "run", "variants", *launch}:
                out.append((f"{where}.{key}", section[key],
                            f"unknown key; train takes common, run, variants and {sorted(launch)}"))
        _dataclass_errors(LaunchConfig, {k: v for k, v in section.items() if k in launch}, where, out)
        shared, variants, run = section.get("common"), section.get("variants"), section.get("run")
        if not isinstance(shared, dict):
            out.append((f"{where}.common", shared, "a mapping of TrainConfig's keys"))
            return
        if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
            out.append((f"{where}.variants", variants, "a mapping of variant name to a mapping of TrainConfig's keys"))
            return
        before = len(out)
        _dataclass_errors(TrainConfig, shared, f"{where}.common", out, partial=True)
        for name, variant in variants.items():
            _dataclass_errors(TrainConfig, variant, f"{where}.variants.{name}", out, partial=True)
        folder = registry.section("train.common").folder
        for key, section_ in [("common", shared), *((f"variants.{n}", v) for n, v in variants.items())]:
            for name in TrainConfig.FILE_FIELDS:
                _file_errors(section_.get(name), folder, f"{where}.{key}.{name}", root, out)
        if len(out) == before:  # what spans keys, on each variant as the train stage builds it
            found: list[tuple[str, Any, str]] = []
            for name, variant in variants.items():
                _post_init_errors(TrainConfig, {**shared, **variant}, f"{where}.variants.{name}", found)
            by_message: dict[str, list[str]] = {}
            for key, _, message in found:
                by_message.setdefault(message, []).append(key)
            for message, keys in by_message.items():  # wrong for every variant: a train.common value
                out.extend([(f"{where}.common", CROSS_KEY, message)] if len(keys) == len(variants) else
                           [(key, CROSS_KEY, message) for key in keys])
        if not isinstance(run, list) or not all(isinstance(v, str) for v in run):
            out.append((f"{where}.run", run, "a list of variant names"))
        else:
            out.extend((f"{where}.run", v, f"one of the variants {sorted(variants)}") for v in run if v not in variants)

    def evaluation(section, where, out):
        before = len(out)
        _dataclass_errors(registry.section("eval").cls, section, where, out)
        if len(out) == before and isinstance(section.get("data"), dict):
            folder = registry.section("eval.data.<name>").folder
            for name, path in section["data"].items():
                _file_errors(path, f"{folder}/{name}", f"{where}.data.{name}", root, out)

    def of(cls):
        return lambda section, where, out: _dataclass_errors(cls, section, where, out)

    special = {"problems": problems, "teacher": teacher, "train": train, "eval": evaluation}
    return {key: special.get(key) or of(registry.section(key).cls) for key in registry.TOP}


# Top-level keys beside the sections: the experiment's label, the composition's check, and the
# dotted params keys the sweep this run is a point of varies (`iterpref.sweep` sets them on every
# job; empty: not part of a sweep); the report names them with their values.
TOP_LEVEL = {"experiment_name": str, "config_checked": bool, "swept_keys": list[str]}
_ABSENT = object()


def value_at(tree: dict, key: str, default: Any = _ABSENT) -> Any:
    """The value at dotted ``key`` of nested mappings (``train.common.beta``); ``default`` when a
    part is missing, else KeyError naming the first missing part."""
    node = tree
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            if default is not _ABSENT:
                return default
            raise KeyError(f"{key}: no {part!r} under {'.'.join(key.split('.')[:i]) or 'the top level'}")
        node = node[part]
    return node


def check(params: dict, root: Path | None = None) -> list[tuple[str, Any, str]]:
    """Every (key, value, expected) that ``params`` gets wrong; empty when it is valid. With the
    project ``root``, also every file a parameter names that is missing, outside its folder or
    malformed."""
    out: list[tuple[str, Any, str]] = []
    sections = _sections(root)
    for key, value in params.items():
        if key not in sections and key not in TOP_LEVEL:
            out.append((key, value, f"unknown key; params take {sorted([*sections, *TOP_LEVEL])}"))
    for key, fn in sections.items():
        if key not in params:
            out.append((key, None, "a section; the key is missing"))
        elif not isinstance(params[key], dict):
            out.append((key, params[key], "a mapping"))
        else:
            fn(params[key], key, out)
    for key, tp in TOP_LEVEL.items():
        if key in params:
            _type_errors(tp, params[key], key, out)
    swept, absent = params.get("swept_keys"), object()
    for i, key in enumerate(swept if isinstance(swept, list) else []):
        if isinstance(key, str) and value_at(params, key, absent) is absent:
            out.append((f"swept_keys[{i}]", key, "a dotted key of the params, e.g. train.common.beta"))
    if "experiment_name" not in params:
        out.append(("experiment_name", None, "a name (str); the key is missing"))
    return out


def validate(params: dict, conf_dir: str | Path | None = None, source: str | None = None) -> None:
    """Raise `ConfigError` listing every problem of ``params``, each with where its value came
    from: the conf/ files under ``conf_dir`` that set it, else a command-line override (or
    ``source``, the file the params were read from, when given)."""
    problems = check(params, Path(conf_dir).resolve().parent if conf_dir else None)
    if not problems:
        return
    origins = Origins(conf_dir) if conf_dir else None
    lines = []
    for key, value, expected in problems:
        if value == CROSS_KEY:  # a check that spans keys: its own message says which
            lines.append(expected if expected.startswith(f"{key}:") else f"{key}: {expected}")
            continue
        where = source or (origins.of(key, value) if origins else None)
        what = expected if expected.startswith("unknown key") else f"expected {expected}"
        lines.append(f"{key} = {value!r}: {what}" + (f" (from {where})" if where else ""))
    raise ConfigError(lines)


class Origins:
    """Which conf/ files set a key: each YAML file's keys, placed where Hydra puts them (a group
    file under its group's name, ``# @package _global_`` files at the root)."""

    def __init__(self, conf_dir: str | Path):
        import yaml

        self.conf_dir = Path(conf_dir)
        self.values: dict[str, list[tuple[str, Any]]] = {}
        for path in sorted(self.conf_dir.rglob("*.yaml")):
            rel = path.relative_to(self.conf_dir)
            if rel.parts[0] in ("hydra", "accelerate"):
                continue
            text = path.read_text(encoding="utf-8")
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if not isinstance(data, dict):
                continue
            prefix = "" if "@package _global_" in text or len(rel.parts) == 1 else ".".join(rel.parts[:-1])
            self._flatten(data, prefix, str(Path(self.conf_dir.name) / rel))

    def _flatten(self, data: Any, prefix: str, name: str) -> None:
        if isinstance(data, dict):
            for k, v in data.items():
                if k == "defaults" and not prefix:
                    continue
                self._flatten(v, f"{prefix}.{k}" if prefix else str(k), name)
        self.values.setdefault(prefix, []).append((name, data))

    def of(self, key: str, value: Any) -> str:
        """The files that set ``key`` to ``value``, else 'a command-line override'."""
        key = key.split("[")[0]
        files = [name for name, v in self.values.get(key, []) if v == value]
        if files:
            return ", ".join(dict.fromkeys(files))
        return "a command-line override (-S / Hydra override), not a conf/ file"


# ----------------------------------------------------------------------------- Hydra's hook

RESOLVER = "iterpref_check"


def register() -> None:
    """Register the ``${iterpref_check:}`` resolver that conf/config.yaml's ``config_checked``
    uses: resolving it validates the whole composition (DVC resolves it while composing for
    ``dvc exp run``, before it writes params.yaml) and gives ``true``."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _check_composition)


def _check_composition(*, _root_: Any) -> bool:
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(_root_, resolve=False)
    data.pop("config_checked", None)
    validate(OmegaConf.to_container(OmegaConf.create(data), resolve=True), conf_dir=_conf_dir())
    return True


_composing: list[Path] = []  # the conf/ folder `composing` names, innermost last


@contextlib.contextmanager
def composing(conf_dir: str | Path) -> Iterator[None]:
    """Resolve ``config_checked`` against ``conf_dir`` (where `validate` looks up origins)."""
    _composing.append(Path(conf_dir))
    try:
        yield
    finally:
        _composing.pop()


def _conf_dir() -> Path | None:
    """The conf/ folder being composed: the one `composing` names, else the project's the
    process works in (DVC composes from the repository root)."""
    if _composing:
        return _composing[-1]
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "conf" / "config.yaml").is_file():
            return folder / "conf"
    return None
