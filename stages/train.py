"""Stage `train@VARIANT`: focal DPO / DPO / RPO / SFT on data/pairs.jsonl -> models/trained/VARIANT/."""

import json
import sys
from pathlib import Path

import torch

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig, train

if __name__ == "__main__":
    variant = sys.argv[1]
    params = P.load()
    runtime.configure(params)
    tcfg = params["train"]
    if variant not in tcfg["variants"]:
        raise SystemExit(f"params.yaml: train.variants has no {variant!r}; known: {sorted(tcfg['variants'])}")
    spec = dict(tcfg["variants"][variant])
    mask = P.build(MaskConfig, spec.pop("mask", {}), f"train.variants.{variant}.mask")
    cfg = P.build(TrainConfig, {**tcfg["common"], **spec, "mask": mask}, f"train.variants.{variant}")
    report_to = tracking.wandb_env(params)
    use_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    metrics = train(cfg, "models/student", "data/pairs.jsonl", Path("models/trained") / variant,
                    run_name=f"{params['experiment_name']}-{variant}", report_to=report_to, use_cpu=use_cpu)
    Path("reports/train").mkdir(parents=True, exist_ok=True)
    summary = {k: metrics[k] for k in ("pairs", "steps", "train_loss", "train_runtime_s")}
    summary.update({k: metrics["last"].get(k) for k in ("rewards/accuracies", "rewards/margins")})
    summary["peak_rss_gib"] = runtime.peak_rss_gib()
    print(json.dumps(summary))
    # the per-step curve, for the report's figure (the report stage does not read model folders;
    # `dvc metrics` skips the list)
    summary["curve"] = [{k: h[k] for k in ("step", "loss", "rewards/margins", "rewards/accuracies") if k in h}
                        for h in metrics["log_history"]]
    Path(f"reports/train/{variant}.json").write_text(json.dumps(summary, indent=2) + "\n")
