"""Stage `report`: reports/summary.md (the paper's Table 1 layout, significance, settings, data,
training, evaluation), reports/metrics.json (DVC metrics), reports/figures/*.png, the probe's
per-token picture reports/figures/probe_tokens.html and the data of dvc.yaml's plots
(reports/plots/*.csv).

Missing inputs (a variant not trained or evaluated, an evaluation that errored) are listed in
the summary and skipped, never fatal.
"""

import json
from pathlib import Path

from iterpref import params as P
from iterpref.cli import command
from iterpref.reporting import dvc_plots, figures, summary, token_picture


@command
def main() -> None:
    params = P.load()
    inp = summary.load(".", list(params["train"]["run"]), list(params["eval"]["benchmarks"]),
                         params["experiment_name"], params["model"]["name"], params["train"], summary.swept_values(params))
    Path("reports").mkdir(exist_ok=True)
    Path("reports/metrics.json").write_text(json.dumps(summary.metrics(inp), indent=2) + "\n")
    dvc_plots.write(inp, "reports/plots")
    written, skipped = figures.render(inp, "reports/figures")
    links = {name: f"figures/{path.name}" for name, path in written.items()}
    why_not = token_picture.render(inp.probe, "reports/figures/probe_tokens.html")
    if why_not:
        skipped["probe_tokens"] = why_not
    else:
        links["probe_tokens"] = "figures/probe_tokens.html"
    Path("reports/summary.md").write_text(summary.markdown(inp, links, skipped))
    print(Path("reports/summary.md").read_text())


if __name__ == "__main__":
    main()
