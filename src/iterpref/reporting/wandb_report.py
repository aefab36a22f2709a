"""A saved W&B comparison of experiments: pass@1 per benchmark with the variants side by side,
the training curves, and the runs' configs and summaries diffed.

    make sync                                              # upload wandb/offline-run-*
    python -m iterpref.reporting.wandb_report --entity ENTITY        # build the report, save it to W&B
    python -m iterpref.reporting.wandb_report --entity ENTITY --out report.json   # only write its definition

The experiments (W&B groups), variants and benchmarks come from the offline runs under
``wandb/`` (`iterpref.tracking.wandb_runs`), or from ``--group``. Saving needs the W&B API (a key and
network); building and writing the definition (``--out``) needs neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, command
from iterpref.params import varied_keys
from iterpref.tracking.wandb_runs import OfflineRun, offline_runs

TRAIN_CURVES = ("train/loss", "train/rewards/margins", "train/rewards/accuracies")


@dataclass
class Contents:
    """What the report compares.

    Attributes:
        groups: the experiments (W&B run groups) to show.
        variants: the variants they trained or evaluated, for the text.
        benchmarks: the benchmarks with a ``BENCH/pass@1`` metric, one bar chart each.
        swept: config keys (``params.…``) whose values differ between the experiments' runs
            (`iterpref.params.varied_keys`): the parallel-coordinates axes and the
            sweep table's columns.
    """

    groups: list[str]
    variants: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)


def contents(runs: list[OfflineRun], groups: list[str] | None = None) -> Contents:
    """What the offline ``runs`` (restricted to ``groups`` when given) hold to compare."""
    runs = [r for r in runs if not groups or r.group in groups]
    if not runs:
        raise ValueError(f"no W&B runs{' in groups ' + ', '.join(groups) if groups else ''} to compare")
    variants = sorted({r.config.get("variant") for r in runs if r.config.get("variant")})
    benchmarks = sorted({r.config.get("benchmark") for r in runs if r.job_type == "eval" and r.config.get("benchmark")})
    # the keys the sweep table (iterpref.reporting.sweep_table) shows as its swept columns
    swept = [f"params.{k}" for k in varied_keys([r.config.get("params") or {} for r in runs])]
    return Contents(groups=groups or sorted({r.group for r in runs}), variants=variants, benchmarks=benchmarks,
                    swept=swept)


def build(c: Contents, entity: str, project: str, title: str = "IterPref: variants side by side",
          link_runsets: bool = True):
    """The W&B report (``wandb_workspaces.reports.v2.Report``) comparing ``c``; nothing is sent.

    ``link_runsets`` names the project in every run set, which serialising then looks up through
    the W&B API (what saving needs); without it the run sets name no project (the definition
    builds offline).
    """
    import wandb_workspaces.reports.v2 as wr

    in_groups = "Group in [" + ", ".join(repr(g) for g in c.groups) + "]"
    where = {"entity": entity, "project": project} if link_runsets else {}

    def runset(name: str, job_type: str | None, groupby: list[str] | None = None, **columns):
        filters = in_groups if job_type is None else f"JobType = '{job_type}' and {in_groups}"
        return wr.Runset(name=name, filters=filters, groupby=groupby or [], **columns, **where)

    evaluation = wr.PanelGrid(
        runsets=[runset("evaluations by experiment and variant", "eval", ["group", "config.variant"])],
        panels=[wr.BarPlot(title=f"{b}: pass@1", metrics=[f"{b}/pass@1"], orientation="v") for b in c.benchmarks])
    training = wr.PanelGrid(
        runsets=[runset("training runs", "train")],
        panels=[wr.LinePlot(title=y, x="train/global_step", y=[y]) for y in TRAIN_CURVES])
    axes = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in c.swept]
    axes += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(f"{b}/pass@1")) for b in c.benchmarks]
    side_by_side = wr.PanelGrid(
        runsets=[runset("all runs", None)],
        panels=[wr.RunComparer(diff_only="split")] + ([wr.ParallelCoordinatesPlot(columns=axes)] if c.swept else []))
    # the sweep table's rows (experiment x variant x benchmark): the evaluation runs grouped by
    # experiment, with the variant, the benchmark, the swept keys and pass@1 as the only columns
    table_columns = ["run:displayName", "config:variant.value", "config:benchmark.value",
                     *[f"config:{k}.value" for k in c.swept], *[f"summary:{b}/pass@1" for b in c.benchmarks]]
    sweep_table = wr.PanelGrid(
        runsets=[runset("the sweep table: evaluations by experiment", "eval", ["group"],
                        pinned_columns=table_columns, column_order=table_columns, lock_columns=True)],
        panels=[wr.BarPlot(title=f"{b}: pass@1 by experiment", metrics=[f"{b}/pass@1"], orientation="v")
                for b in c.benchmarks])
    intro = (f"Experiments (W&B groups): {', '.join(c.groups)}. Variants: {', '.join(c.variants) or '-'}. "
             f"Benchmarks: {', '.join(c.benchmarks) or '-'}. Each bar is one variant of one experiment "
             "(greedy pass@1); differences of a few tasks are noise (see reports/summary.md, McNemar).")
    if c.swept:
        intro += f" Parameters that differ between the experiments: {', '.join(c.swept)}."
    return wr.Report(entity=entity, project=project, title=title, description="Generated by iterpref.reporting.wandb_report",
                     blocks=[wr.MarkdownBlock(text=intro), wr.H2(text="pass@1 per benchmark"), evaluation,
                             wr.H2(text="Training curves"), training,
                             wr.H2(text="Configs and summaries side by side"), side_by_side,
                             wr.H2(text="The sweep table"),
                             wr.MarkdownBlock(text="One row per evaluation run (experiment x variant x benchmark), "
                                                   "grouped by experiment, the swept keys as columns: the rows of "
                                                   "`iterpref-sweep-table`, which adds the tasks that differ from a "
                                                   "baseline and McNemar's p with Holm's correction."),
                             sweep_table])


def definition(report) -> dict:
    """The report's definition as W&B stores it (what ``Report.save`` uploads), as JSON data."""
    model = report._to_model()  # the library's own serialisation step of save()
    return {"displayName": model.display_name, "description": model.description,
            "project": {"name": model.project.name, "entityName": model.project.entity_name},
            "spec": json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True))}


@command
def main() -> None:
    parser = ArgumentParser(description="Build a W&B report comparing experiments' variants.")
    parser.add_argument("--entity", required=True, help="W&B entity (user or team) the runs were synced to")
    parser.add_argument("--project", default=None, help="W&B project (default: logging.wandb.project of params.yaml)")
    parser.add_argument("--group", action="append", default=None,
                        help="an experiment (W&B group) to include; repeat; default: every offline run's group")
    parser.add_argument("--wandb-dir", default="wandb", help="folder of the offline runs")
    parser.add_argument("--title", default="IterPref: variants side by side")
    parser.add_argument("--out", default=None,
                        help="write the definition (JSON, run sets not linked to the project) here instead of saving")
    args = parser.parse_args()
    runs = offline_runs(args.wandb_dir)
    project = args.project
    if project is None:
        from iterpref import params as P

        project = P.load()["logging"]["wandb"]["project"]
    c = contents(runs, args.group) if runs else Contents(groups=args.group or [])
    if not c.groups:
        raise UserError(f"no offline runs under {args.wandb_dir}/ and no --group: nothing to compare")
    report = build(c, args.entity, project, args.title, link_runsets=not args.out)
    if args.out:
        Path(args.out).write_text(json.dumps(definition(report), indent=2) + "\n")
        print(f"wrote {args.out}: {len(c.groups)} experiments, benchmarks {c.benchmarks}, swept {c.swept}")
        return
    report.save()
    print(report.url)


if __name__ == "__main__":
    main()
