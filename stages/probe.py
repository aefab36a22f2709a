"""Stage `probe@VARIANT`: the log-prob shifts of the held-out pairs' tokens, trained policy
(models/trained/VARIANT) against the reference (models/student) -> reports/probe/VARIANT.json
(see iterpref.probe); the headline numbers also go to a W&B run ``VARIANT-probe``.
"""

import json
import sys
import time
from pathlib import Path

import torch

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.cli import command
from iterpref.probe import pair_sums, summarise
from iterpref.records import Pair, read_jsonl
from iterpref.training.recipe import variant_config


@command
def main(variant: str) -> None:
    params = P.load()
    runtime.configure(params)
    cfg = variant_config(params["train"], variant)
    use_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    pairs = read_jsonl("data/pairs_heldout.jsonl", Pair)
    start = time.time()
    report = summarise(pair_sums(Path("models/trained") / variant, "models/student", pairs, cfg, use_cpu), cfg.beta)
    report.update({"variant": variant, "heldout_pairs": len(pairs), "runtime_s": round(time.time() - start, 2),
                   "peak_rss_gib": runtime.peak_rss_gib()})
    out = Path("reports/probe") / f"{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    tracking.log_probe(params, variant, report)
    shown = {k: report[k] and [round(report[k]["mean"], 4), [round(x, 4) for x in report[k]["ci"]]]
             for k in ("rejected_error", "rejected_shared", "focal_margin", "accuracy")}
    print(f"probe {variant}: {report['pairs']} held-out pairs; {shown}; {report['runtime_s']} s, "
          f"peak RSS {report['peak_rss_gib']} GiB")


if __name__ == "__main__":
    main(sys.argv[1])
