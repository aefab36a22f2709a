"""The layer contract of the iterpref package: imports run down the layers, never up, with no
exception.

A unit is a top-level module or package of iterpref (``pairs`` is pairs/build.py and pairs/diff.py,
``debugging`` includes debugging/teachers/), except config/, whose modules are units of their own:
its leaf modules (``config.fields``: `spec`, `ConfigError`, `require_under`, `build`; ``config.paths``:
where the package and the project are) are the base every package builds on, while the check of a
whole composition (``config.schema``, which reads the section registry) and the tools that read the
whole package (the configuration reference, the dvc.yaml graph and lock check) sit at the top. Every
import counts, those inside functions too (`iterpref.config.graph.imports_of`). A unit may import a
unit of a lower layer; never one of a higher layer, nor another unit of its own layer.

     1. sweep, reporting, config.reference, config.lock, config.preflight
     2. params, config.graph
     3. config.schema                            (the check of a whole composition)
     4. config.sections                          (the section registry: every section's dataclass)
     5. probe
     6. training
     7. pairs, debugging, problems
     8. evaluation
     9. llm
    10. sandbox, tracking
    11. records, prompts, models, runtime
    12. config.fields, config.paths, config, iterpref   (config and iterpref: the packages' __init__.py)
    13. cli                                      (UserError and the tools' one-line error report)

Evaluation sits below problems, since problems load benchmarks through it (decontamination:
evaluation.registry; the benchmark-sourced problems: evaluation.mbpp, evaluation.bigcodebench).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iterpref.config import graph

LAYERS: list[tuple[str, ...]] = [
    ("sweep", "reporting", "config.reference", "config.lock", "config.preflight"),
    ("params", "config.graph"),
    ("config.schema",),
    ("config.sections",),
    ("probe",),
    ("training",),
    ("pairs", "debugging", "problems"),
    ("evaluation",),
    ("llm",),
    ("sandbox", "tracking"),
    ("records", "prompts", "models", "runtime"),
    ("config.fields", "config.paths", "config", "iterpref"),
    ("cli",),
]

def unit_of(module: str) -> str:
    """The layered unit of an iterpref module: ``iterpref.pairs.diff`` -> ``pairs``,
    ``iterpref.config.schema`` -> ``config.schema``, ``iterpref`` -> ``iterpref``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "iterpref"
    if parts[1] == "config" and len(parts) > 2:
        return f"config.{parts[2]}"
    return parts[1]


def layer_of(unit: str, layers=LAYERS) -> int | None:
    """The 1-based layer of a unit, None when no layer lists it."""
    return next((i for i, units in enumerate(layers, 1) if unit in units), None)


def modules(root: Path = graph.SRC):
    """Each iterpref source file under ``root`` (a folder holding ``iterpref/``): its path, module
    name and package (what relative imports resolve against)."""
    for path in sorted((root / "iterpref").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            yield path, ".".join(parts), ".".join(parts)
        else:
            yield path, ".".join(parts), ".".join(parts[:-1])


def module_edges(root: Path = graph.SRC) -> set[tuple[str, str]]:
    """Every (importer module, imported module) pair between two units, imports inside functions
    included."""
    return {(name, imported) for path, name, package in modules(root)
            for imported in graph.imports_of(path, package) if unit_of(imported) != unit_of(name)}


def violations(edges, layers=LAYERS) -> list[str]:
    """One line per import that breaks the order, naming both modules, their units and layers."""
    out = []
    for importer, imported in sorted(edges):
        a, b = unit_of(importer), unit_of(imported)
        la, lb = layer_of(a, layers), layer_of(b, layers)
        where = f"{importer} ({a}, layer {la}) imports {imported} ({b}, layer {lb})"
        if la is None or lb is None:
            out.append(f"{where}: {a if la is None else b} is in no layer; add it to LAYERS")
        elif la > lb:
            out.append(f"{where}: a lower layer imports a higher one")
        elif la == lb:
            out.append(f"{where}: two units of one layer")
    return out


def check(edges) -> None:
    """Fail, listing every import against the order."""
    bad = violations(edges)
    assert not bad, "imports against the layer order of tests/test_layers.py:\n" + "\n".join(bad)


def test_imports_run_down_the_layers():
    check(module_edges())


def test_every_unit_is_in_exactly_one_layer():
    listed = [unit for layer in LAYERS for unit in layer]
    assert len(listed) == len(set(listed)), "a unit is listed twice"
    units = {unit_of(name) for _, name, _ in modules()}
    assert not units - set(listed), f"units in no layer: {sorted(units - set(listed))}"
    assert not set(listed) - units, f"layers list units that do not exist: {sorted(set(listed) - units)}"



def test_the_top_level_keeps_at_most_eight_modules():
    top = sorted(p.name for p in (graph.SRC / "iterpref").glob("*.py"))
    assert len(top) <= 8, top


def test_the_checker_names_both_modules_of_an_upward_import():
    """A fabricated edge: records (layer 11) importing the refine loop (layer 7)."""
    with pytest.raises(AssertionError, match=r"iterpref\.records \(records, layer 11\) imports "
                                             r"iterpref\.debugging \(debugging, layer 7\): a lower layer imports a higher one"):
        check({("iterpref.records", "iterpref.debugging")})
    check({("iterpref.debugging", "iterpref.records")})  # downward
    check({("iterpref.config.schema", "iterpref.pairs.build")})  # the registry reads every section
    with pytest.raises(AssertionError, match="iterpref.config.fields .* imports iterpref.pairs.build"):
        check({("iterpref.config.fields", "iterpref.pairs.build")})
    with pytest.raises(AssertionError, match="two units of one layer"):
        check({("iterpref.pairs.build", "iterpref.problems.base")})
    with pytest.raises(AssertionError, match="newpkg is in no layer"):
        check({("iterpref.newpkg.x", "iterpref.records")})


def test_the_checker_reads_imports_inside_functions(tmp_path):
    """A fabricated package tree: a lazy upward import is found and named like any other."""
    pkg = tmp_path / "iterpref"
    (pkg / "sandbox").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sandbox" / "__init__.py").write_text("from iterpref.records import Outcome\n")
    (pkg / "records.py").write_text("def later():\n    from iterpref.debugging import debug_one\n")
    edges = module_edges(tmp_path)
    assert edges == {("iterpref.sandbox", "iterpref.records"), ("iterpref.records", "iterpref.debugging")}
    with pytest.raises(AssertionError, match="iterpref.records .* imports iterpref.debugging .*: a lower layer"):
        check(edges)


def test_unit_of():
    assert unit_of("iterpref") == "iterpref"
    assert unit_of("iterpref.config") == "config"
    assert unit_of("iterpref.config.schema") == "config.schema"
    assert unit_of("iterpref.debugging.teachers.llm") == "debugging"
    assert unit_of("iterpref.pairs.diff") == "pairs"
    assert layer_of("evaluation") == 8 and layer_of("nothing") is None
