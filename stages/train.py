"""Stage `train@VARIANT`: focal DPO / DPO / RPO / SFT on data/pairs.jsonl -> models/trained/VARIANT/.

With ``train.common.probe_points``, the policy's log-probs of data/pairs_heldout.jsonl and of the
training pairs are recorded along training into models/trained/VARIANT/along_training.pt (the probe
stage draws its curve from them) and ``recorded_steps_s`` in reports/train/VARIANT.json says what
each recorded step cost.

With ``train.launcher=accelerate`` this script re-launches itself under ``accelerate launch``
(see iterpref.training.launch); every rank then trains and the main one writes the outputs.
The reference's log-probs of the training pairs come from data/reference_logprobs/training.pt (stage
`reference_logprobs`) where they were computed under the variant's settings (``shared_reference`` in
the report says whether), else TRL's precompute runs the reference.
A killed run resumes from its last checkpoint in .cache/train/VARIANT/ (``train.common.save_steps``).
"""

import json
import sys
from pathlib import Path

import torch

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.cli import command
from iterpref.training import launch
from iterpref.training.recipe import train, variant_config


@command
def main(variant: str) -> None:
    params = P.load()
    tcfg = params["train"]
    # train.launcher, train.accelerate, train.num_processes, ...: everything beside common/run/variants
    launch_cfg = P.build(launch.LaunchConfig, {k: v for k, v in tcfg.items() if k not in ("common", "run", "variants")},
                         "train")
    use_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    launch.relaunch_if_needed(launch_cfg, [__file__, variant], use_cpu)
    runtime.configure(params)
    torch.set_num_threads(launch.threads_per_rank(int(params["runtime"]["threads"])))
    cfg = variant_config(tcfg, variant)
    # TRL's W&B callback logs the training curves into the run stage_run opens (main process only)
    with tracking.stage_run(params, "train", variant, variant=variant) as run:
        metrics = train(cfg, "models/student", "data/pairs.jsonl", Path("models/trained") / variant,
                        run_name=variant, cache_root=Path(".cache/train") / variant,
                        report_to=["wandb"] if run else [], use_cpu=use_cpu,
                        heldout_path="data/pairs_heldout.jsonl", reference_path="data/reference_logprobs/training.pt")
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return
        history = metrics["log_history"]
        summary = {k: metrics[k] for k in ("pairs", "steps", "processes", "resumed_from_step", "train_loss",
                                           "train_runtime_s", "recorded_steps_s", "shared_reference")}
        summary.update({k: history[-1].get(k) if history else None for k in ("rewards/accuracies", "rewards/margins")})
        summary["peak_rss_gib"] = runtime.peak_rss_gib()
        tracking.log_train(run, summary)
    Path("reports/train").mkdir(parents=True, exist_ok=True)
    print(json.dumps(summary))
    # the per-step curve, for the report's figure (the report stage does not read model folders;
    # `dvc metrics` skips the list)
    summary["curve"] = [{k: h[k] for k in ("step", "learning_rate", "loss", "rewards/margins", "rewards/accuracies") if k in h}
                        for h in history]
    Path(f"reports/train/{variant}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
