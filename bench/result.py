"""The headline numbers a bench/ script hands to `make bench` (bench/run_all.py).

A bench script takes ``--json PATH`` (`add_json_option`) and, when given, writes its headline
`Metric` rows there with `write`; `read` loads them back. The script's own printed report
stays as it is: the aggregator never parses stdout.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
from dataclasses import asdict, dataclass

GOAL_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}


@dataclass
class Metric:
    """One headline number.

    Attributes:
        name: what is measured, e.g. ``target_dpo / dpo step time``.
        value: the number.
        unit: ``x`` for a ratio, ``s``, ``tok/s``, ``jobs/s``, ...; empty for a count.
        goal: the target as ``<op> <number>`` (``<= 1.02``, ``>= 1.0``, ``== 0``); None: none.
    """

    name: str
    value: float
    unit: str = ""
    goal: str | None = None

    def met(self) -> bool | None:
        """Whether ``value`` meets ``goal``; None without a goal."""
        if self.goal is None:
            return None
        op, bound = self.goal.split()
        if op not in GOAL_OPS:
            raise ValueError(f"metric {self.name!r}: goal {self.goal!r} must be '<op> <number>', op in {list(GOAL_OPS)}")
        return GOAL_OPS[op](self.value, float(bound))


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json PATH`` option every bench script takes."""
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the headline numbers as JSON here (for make bench)")


def write(path: str | os.PathLike | None, bench: str, metrics: list[Metric], details: dict | None = None) -> None:
    """Write ``metrics`` (and free-form ``details``: settings, versions) to ``path``; a no-op when
    ``path`` is None."""
    if path is None:
        return
    for m in metrics:
        m.met()  # a malformed goal fails here, in the bench, not in the aggregator
    doc = {"bench": bench, "metrics": [asdict(m) for m in metrics], "details": details or {}}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, default=str)
        fh.write("\n")


def read(path: str | os.PathLike) -> tuple[str, list[Metric], dict]:
    """``(bench, metrics, details)`` from a file `write` wrote; a bad file raises ValueError
    naming it and the field."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    try:
        metrics = [Metric(**m) for m in doc["metrics"]]
        return doc["bench"], metrics, doc.get("details", {})
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a bench result (fields bench, metrics[name, value, unit, goal]): {err!r}") from err
