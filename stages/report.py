"""Stage `report`: reports/summary.md (the paper's Table 1 layout, significance, data, training,
evaluation), reports/metrics.json (DVC metrics), reports/figures/*.png and the probe's per-token
picture reports/figures/probe_tokens.html.

Missing inputs (a variant not trained or evaluated, an evaluation that errored) are listed in
the summary and skipped, never fatal.
"""

import json
from pathlib import Path

from iterpref import params as P
from iterpref.reporting import figures, summary, token_picture

if __name__ == "__main__":
    params = P.load()
    inp = summary.load(".", list(params["train"]["run"]), list(params["eval"]["benchmarks"]),
                         params["experiment_name"], params["model"]["name"])
    Path("reports").mkdir(exist_ok=True)
    Path("reports/metrics.json").write_text(json.dumps(summary.metrics(inp), indent=2) + "\n")
    written, skipped = figures.render(inp, "reports/figures")
    links = {name: f"figures/{path.name}" for name, path in written.items()}
    why_not = token_picture.render(inp.probe, "reports/figures/probe_tokens.html")
    if why_not:
        skipped["probe_tokens"] = why_not
    else:
        links["probe_tokens"] = "figures/probe_tokens.html"
    Path("reports/summary.md").write_text(summary.markdown(inp, links, skipped))
    print(Path("reports/summary.md").read_text())
