"""Stage `report`: reports/summary.md, reports/metrics.json and reports/figures/pass_at_1.png."""

import json
from pathlib import Path

from iterpref import params as P
from iterpref import reporting

if __name__ == "__main__":
    params = P.load()
    variants = ["reference"] + list(params["train"]["run"])
    benchmarks = list(params["eval"]["benchmarks"])
    table = reporting.collect("reports/eval", variants, benchmarks)
    missing = [f"{v}/{b}" for v in variants for b in benchmarks if b not in table.get(v, {})]
    if missing:
        raise SystemExit(f"reports/eval is missing {missing}; run the evaluate stages first")
    pairs = json.loads(Path("reports/pairs.json").read_text())
    train = {v: json.loads(Path(f"reports/train/{v}.json").read_text()) for v in params["train"]["run"]}
    Path("reports/metrics.json").write_text(json.dumps(reporting.metrics(table), indent=2) + "\n")
    Path("reports/summary.md").write_text(
        reporting.markdown(table, benchmarks, pairs, train, params["experiment_name"]))
    reporting.figure(table, benchmarks, "reports/figures/pass_at_1.png")
    print(Path("reports/summary.md").read_text())
