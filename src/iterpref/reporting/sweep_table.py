"""A sweep's table: every experiment x variant x benchmark against one baseline, as Markdown and CSV.

Each row has the experiment's values of the swept parameters (the params.yaml keys whose values
differ between the experiments), pass@1, the tasks that differ from the baseline on the same
benchmark (gained, lost), McNemar's exact p and that p corrected for the number of comparisons
in the table (Holm), and the variant's held-out focal margin (reports/metrics.json). Every
experiment is read through DVC at its own revision (`iterpref.reporting.runs`): the workspace is
not touched.

    python -m iterpref.reporting.sweep_table --sweep grid --baseline grid-0:dpo       # experiments grid-0, grid-1, ...
    python -m iterpref.reporting.sweep_table beta01 beta02 --baseline main:target_dpo --out reports/sweep

A Hydra multirun of `iterpref.sweep` writes the table of its jobs at its end
(`MultirunTable`, conf/sweep.yaml): multirun/<sweep.name>/table.md and table.csv.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from iterpref.cli import ArgumentParser, UserError, command
from iterpref.params import flatten, shown, varied_keys
from iterpref.reporting.compare import EVAL_DIR, compare
from iterpref.reporting.runs import RunFiles


@dataclass
class Experiment:
    """One experiment's params.yaml and reports/metrics.json, and its files for the evaluations."""

    name: str
    files: RunFiles
    params: dict
    metrics: dict = field(default_factory=dict)

    @classmethod
    def read(cls, repo: str | Path, name: str) -> Experiment:
        files = RunFiles(repo, name)
        params = yaml.safe_load(files.read_text("params.yaml"))
        metrics = files.read_json("reports/metrics.json") if files.exists("reports/metrics.json") else {}
        return cls(name, files, params, metrics)

    def trained(self) -> list[str]:
        return list(self.params["train"]["run"])

    def benchmarks(self) -> list[str]:
        return list(self.params["eval"]["benchmarks"])

    def result(self, variant: str, benchmark: str) -> dict | None:
        """The evaluation report, or None when that evaluation is not there."""
        path = f"{EVAL_DIR}/{variant}/{benchmark}.json"
        return self.files.read_json(path) if self.files.exists(path) else None


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (same order): the i-th smallest is multiplied by
    n - i, made monotone and capped at 1. It controls the family-wise error rate over all of them."""
    n = len(p_values)
    adjusted = [0.0] * n
    running = 0.0
    for rank, i in enumerate(sorted(range(n), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (n - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def parse_baseline(spec: str) -> tuple[str, str]:
    """``EXP:VARIANT`` -> (EXP, VARIANT)."""
    exp, sep, variant = spec.rpartition(":")
    if not (sep and exp and variant):
        raise UserError(f"--baseline {spec!r}: expected EXP:VARIANT, e.g. grid-0:dpo or main:reference")
    return exp, variant


def rows(experiments: list[Experiment], baseline: Experiment, base_variant: str) -> tuple[list[dict], list[str]]:
    """The table's rows (the baseline first, then each experiment's trained variants per benchmark)
    and its swept keys. A row compared with the baseline has ``gained``, ``lost``, ``p`` and
    ``p_holm``; an evaluation missing on either side leaves them empty."""
    swept = varied_keys([e.params for e in [baseline, *experiments]])
    points = [(baseline, base_variant)] + [(e, v) for e in experiments for v in e.trained()
                                          if (e.name, v) != (baseline.name, base_variant)]
    out = []
    for exp, variant in points:
        flat = flatten(exp.params)
        focal = (exp.metrics.get(variant) or {}).get("focal_margin")
        for bench in exp.benchmarks():
            r = exp.result(variant, bench)
            scored = r is not None and "per_task" in r
            passed = sum(t["passed"] for t in r["per_task"]) if scored else None
            tasks = len(r["per_task"]) if scored else None
            row = {"experiment": exp.name, "variant": variant, "benchmark": bench,
                   **{k: flat.get(k) for k in swept},
                   "pass@1": round(100 * passed / tasks, 2) if tasks else None, "passed": passed, "tasks": tasks,
                   "gained": None, "lost": None, "p": None, "p_holm": None, "focal_margin": focal,
                   "baseline": exp is baseline and variant == base_variant}
            base = baseline.result(base_variant, bench)
            if not row["baseline"] and scored and base is not None and "per_task" in base:
                c = compare(base, r)
                row.update(gained=len(c["gained"]), lost=len(c["lost"]), p=c["p_value"])
            out.append(row)
    tested = [i for i, r in enumerate(out) if r["p"] is not None]
    for i, p in zip(tested, holm([out[i]["p"] for i in tested])):
        out[i]["p_holm"] = p
    return out, swept


COLUMNS = ("pass@1", "passed", "tasks", "gained", "lost", "p", "p_holm", "focal_margin")


def to_csv(table: list[dict], swept: list[str]) -> str:
    """One line per row: experiment, variant, benchmark, the swept keys, then `COLUMNS` (empty: no value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["experiment", "variant", "benchmark", *swept, *COLUMNS])
    for r in table:
        cells = [r["experiment"], r["variant"], r["benchmark"], *[shown(r[k]) for k in swept], *[r[k] for k in COLUMNS]]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def to_markdown(table: list[dict], swept: list[str], baseline: str) -> str:
    """The table in Markdown, with a line saying what it compares and how p is corrected."""
    tested = sum(r["p"] is not None for r in table)
    lines = [f"Baseline: `{baseline}`. Tasks differ: gained (only the row passes) / lost (only the baseline "
             f"passes) on the same benchmark; McNemar's exact p, and Holm's correction of it for the {tested} "
             "comparisons in this table. Swept: " + (", ".join(f"`{k}`" for k in swept) or "nothing") + ".", "",
             "| experiment | variant | benchmark | " + "".join(f"{k} | " for k in swept)
             + "pass@1 | differ (+/-) | McNemar p | Holm p | focal margin |",
             "|" + "---|" * (8 + len(swept))]
    for r in table:
        differ = "baseline" if r["baseline"] else (
            "-" if r["gained"] is None else f"{r['gained'] + r['lost']} (+{r['gained']}/-{r['lost']})")
        score = "-" if r["pass@1"] is None else f"{r['pass@1']:.1f} ({r['passed']}/{r['tasks']})"
        lines.append(f"| {r['experiment']} | {r['variant']} | {r['benchmark']} | "
                     + "".join(f"{shown(r[k])} | " for k in swept)
                     + f"{score} | {differ} | {_fmt(r['p'], '.3g')} | {_fmt(r['p_holm'], '.3g')} | "
                       f"{_fmt(r['focal_margin'], '+.4f')} |")
    return "\n".join(lines) + "\n"


def sweep_experiments(repo: str | Path, sweep: str) -> list[str]:
    """The DVC experiments ``<sweep>-<n>`` of ``repo`` (every commit), by job number."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "ls", "--all-commits", "--name-only"], cwd=repo,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"dvc exp ls failed in {repo}: {proc.stderr.strip().splitlines()[-1:]}")
    pattern = re.compile(rf"{re.escape(sweep)}-(\d+)")
    found = {int(m.group(1)): name for name in proc.stdout.split() if (m := pattern.fullmatch(name))}
    return [found[k] for k in sorted(found)]


def write(repo: str | Path, names: list[str], baseline: str, out: str | Path) -> tuple[Path, Path]:
    """Read the experiments ``names`` and the baseline ``EXP:VARIANT`` from ``repo``, write
    ``out``.md and ``out``.csv; returns their paths."""
    if not names:
        raise UserError("no experiments to tabulate")
    base_exp, base_variant = parse_baseline(baseline)
    experiments = [Experiment.read(repo, n) for n in names]
    base = next((e for e in experiments if e.name == base_exp), None) or Experiment.read(repo, base_exp)
    if not base.files.stems(f"{EVAL_DIR}/{base_variant}"):
        raise UserError(f"--baseline {baseline}: no evaluation of {base_variant!r} at {base_exp}")
    table, swept = rows(experiments, base, base_variant)
    md, csv_path = Path(f"{out}.md"), Path(f"{out}.csv")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(to_markdown(table, swept, baseline))
    csv_path.write_text(to_csv(table, swept))
    return md, csv_path


class MultirunTable:
    """Hydra callback (conf/sweep.yaml): at the end of a multirun, the table of its jobs'
    experiments against ``sweep.baseline`` (default: the first job's first trained variant)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        HydraConfig.instance().set_config(config)  # sweep.repo is ${hydra:runtime.cwd}; no job's config is set now
        sweep = OmegaConf.to_container(config.sweep, resolve=True)
        folder = Path(config.hydra.sweep.dir)
        jobs = sorted(int(d.name) for d in folder.iterdir() if d.name.isdigit() and (d / "dvc.log").exists())
        names = [f"{sweep['name']}-{j}" for j in jobs]
        if not names:
            return
        baseline = sweep.get("baseline")
        if not baseline:
            first = Experiment.read(sweep["repo"], names[0])
            baseline = f"{names[0]}:{first.trained()[0]}"
        md, _ = write(sweep["repo"], names, baseline, folder / "table")
        print(f"sweep table: {md} and {md.with_suffix('.csv')}")
        print(md.read_text())


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiments", nargs="*", help="DVC experiment names or git revisions")
    ap.add_argument("--sweep", help="add the experiments <SWEEP>-0, <SWEEP>-1, ... (iterpref.sweep's names)")
    ap.add_argument("--baseline", required=True, help="EXP:VARIANT every row is compared with")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--out", help="write OUT.md and OUT.csv (default: multirun/<SWEEP>/table, else sweep_table)")
    args = ap.parse_args(argv)
    names = list(args.experiments)
    if args.sweep:
        found = sweep_experiments(args.repo, args.sweep)
        if not found:
            raise UserError(f"--sweep {args.sweep}: no DVC experiment named {args.sweep}-<n> in {args.repo}")
        names += [n for n in found if n not in names]
    out = args.out or (f"multirun/{args.sweep}/table" if args.sweep else "sweep_table")
    md, csv_path = write(args.repo, names, args.baseline, out)
    print(md.read_text(), end="")
    print(f"wrote {md} and {csv_path}")


if __name__ == "__main__":
    main()
