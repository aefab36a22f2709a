"""Stage `probe@VARIANT`: the log-prob shifts of each token group, trained policy
(models/trained/VARIANT) against the reference (models/student), on the held-out pairs and on the
pairs the variant trained on -> reports/probe/VARIANT.json (see iterpref.probe); the held-out
headline numbers also go to a W&B run ``VARIANT-probe``.

The report's top level is the held-out summary; ``in_sample`` is the same summary on the training
pairs (``train.common.max_pairs`` drawn as training draws them); ``tokens`` holds every completion
token's shift for the first `SHOWN` held-out pairs that have D- lines (the report's per-token picture).
The reference's log-probs come from data/reference_logprobs/ (stage `reference_logprobs`) where
they were computed under the variant's settings (``shared_reference`` says per pair set), else the
reference model runs here.

``along_training`` is the probe's curve: each token group's mean shift at step 0 (the reference:
0) and at every step the trainer recorded (``train.common.probe_points``: the policy's log-probs in
models/trained/VARIANT/along_training.pt, iterpref.training.record), held out and in sample; empty
when the trainer recorded none. Its last step is the final weights: when the trainer recorded it
under the variant's settings, those log-probs are the final weights' (``recorded_policy`` says per
pair set) and the trained model is not run again.
"""

import json
import sys
import time
from pathlib import Path

import torch

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.cli import command
from iterpref.probe import along_training, pair_sums, step_sums, summarise
from iterpref.records import Pair, read_jsonl
from iterpref.training import logprobs, record
from iterpref.training.recipe import training_sample, variant_config

SHOWN = 3  # held-out pairs whose every token the report pictures
REFERENCE = Path("data/reference_logprobs")  # the reference's log-probs (stage reference_logprobs)


def _brief(report: dict) -> dict:
    return {k: report[k] and [round(report[k]["mean"], 4), [round(x, 4) for x in report[k]["ci"]]]
            for k in ("rejected_prefix", "rejected_error", "rejected_suffix", "focal_margin", "accuracy")}


@command
def main(variant: str) -> None:
    params = P.load()
    runtime.configure(params)
    cfg = variant_config(params["train"], variant)
    use_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    heldout = read_jsonl("data/pairs_heldout.jsonl", Pair)
    trained_on = training_sample(read_jsonl("data/pairs.jsonl", Pair), cfg)
    shown = frozenset([p.pair_id for p in heldout if p.rejected_spans][:SHOWN])
    sets = {"heldout": heldout, "training": trained_on}
    shared = {name: logprobs.load(REFERENCE / f"{name}.pt", pairs, cfg) for name, pairs in sets.items()}
    stored = record.load(Path("models/trained") / variant / record.FILE)
    recorded = stored["steps"] if stored else {}
    final = recorded[max(recorded)] if recorded and stored["settings"] == logprobs.settings(cfg) else {}
    start = time.time()
    sums, tokens = pair_sums(Path("models/trained") / variant, "models/student", heldout, cfg, use_cpu, detail=shown,
                             reference=shared["heldout"], policy=final.get("heldout"))
    report = summarise(sums, cfg.beta)
    heldout_s = time.time() - start
    in_sample = summarise(pair_sums(Path("models/trained") / variant, "models/student", trained_on, cfg, use_cpu,
                                    reference=shared["training"], policy=final.get("training"))[0], cfg.beta)
    curve = []
    for name, pairs in sets.items():
        if recorded and pairs:
            steps = step_sums({step: r[name] for step, r in recorded.items()}, "models/student", pairs, cfg, use_cpu,
                              reference=shared[name])
            curve += along_training(steps, name, cfg.beta)
    report.update({"variant": variant, "heldout_pairs": len(heldout), "in_sample": in_sample, "tokens": tokens,
                   "along_training": curve,
                   "shared_reference": {name: lp is not None for name, lp in shared.items()},
                   "recorded_policy": {name: name in final for name in sets},
                   "heldout_runtime_s": round(heldout_s, 2), "runtime_s": round(time.time() - start, 2),
                   "peak_rss_gib": runtime.peak_rss_gib()})
    out = Path("reports/probe") / f"{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    tracking.log_probe(params, variant, report)
    print(f"probe {variant}: {report['pairs']} held-out pairs {_brief(report)}; {in_sample['pairs']} training pairs "
          f"{_brief(in_sample)}; along training: {len({r['step'] for r in curve})} steps; {report['runtime_s']} s, "
          f"peak RSS {report['peak_rss_gib']} GiB")


if __name__ == "__main__":
    main(sys.argv[1])
