"""params.yaml: the composed configuration every stage reads.

conf/ holds Hydra groups; `dvc exp run -S ...` composes them and overwrites params.yaml.
`dvc repro` does not compose, so params.yaml is committed as the composition of the default,
and `python -m iterpref.params` rewrites it after an edit under conf/ (a test checks they agree).
Stage scripts never use ``@hydra.main``: they call `load` (a known DVC pitfall otherwise).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from iterpref.cli import ArgumentParser, UserError, command
from iterpref.config.fields import ConfigError, build  # noqa: F401  (build: the stages' P.build)
from iterpref.config.paths import ROOT


def compose(overrides: list[str] | None = None, conf_dir: str | os.PathLike | None = None) -> dict:
    """Compose conf/config.yaml with Hydra overrides into a plain dict; an invalid key or value
    raises `schema.ConfigError` (wrapped by OmegaConf) naming it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from iterpref.config import schema

    schema.register()
    conf_dir = Path(conf_dir or ROOT / "conf").resolve()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    with schema.composing(conf_dir):
        return OmegaConf.to_container(cfg, resolve=True)


# Keys that differ between the points of a grid by construction, never a swept setting: train.run
# is what a point trains (a table's variant column says it), the label and the sweep's own record.
NOT_SWEPT = ("train.run", "experiment_name", "swept_keys")


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested params as ``{dotted.key: value}`` (an empty mapping is a value)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def varied_keys(params: list[dict], ignore: tuple[str, ...] = NOT_SWEPT) -> list[str]:
    """The dotted keys whose values differ between the ``params`` (a key missing from one differs),
    sorted: what a sweep over them varies."""
    flat = [flatten(p) for p in params]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if k not in ignore
            and len({json.dumps(f.get(k, "<missing>"), sort_keys=True) for f in flat}) > 1]


def shown(value: object) -> str:
    """A params value as a table shows it: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def config_error(err: BaseException) -> str:
    """The user-facing message of a composition failure: the `ConfigError` inside OmegaConf's
    and Hydra's wrappers when there is one, else the error's own text."""
    seen = err
    while seen is not None:
        if isinstance(seen, ConfigError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(err)


def dump(params: dict) -> str:
    """params.yaml text, in the key order conf/ composes to (as DVC's Hydra integration writes it)."""
    return yaml.safe_dump(params, sort_keys=False, default_flow_style=False)


def load(path: str | os.PathLike = "params.yaml") -> dict:
    """The params a stage reads, checked against the config dataclasses (a hand-edited
    params.yaml fails here, naming the key, before the stage does any work)."""
    from iterpref.config.schema import validate

    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    try:
        validate(params, conf_dir=ROOT / "conf")
    except ConfigError as err:
        raise ConfigError([f"{path}: {line}" for line in err.problems]) from None
    return params



@command
def main() -> None:
    parser = ArgumentParser(description="Write params.yaml as conf/ composes it.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=smoke")
    parser.add_argument("--out", default=str(ROOT / "params.yaml"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args()
    try:
        text = dump(compose(args.overrides))
    except Exception as err:  # Hydra's and OmegaConf's wrappers around a ConfigError or a bad override
        raise UserError(f"conf/ does not compose: {config_error(err)}") from None
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if yaml.safe_load(current) != yaml.safe_load(text):
            raise SystemExit(f"{args.out} differs from what conf/ composes to; run python -m iterpref.params")
        return
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
