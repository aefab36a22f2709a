"""The paper presets compose, with the paper's numbers (shared/PAPER.md section 5)."""

from __future__ import annotations

import pytest

from iterpref import params as P
from iterpref.training.launch import LaunchConfig
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig

PRESETS = {  # experiment: (hub id, lr paper, lr repo)
    "paper_qwen25_coder_7b": ("Qwen/Qwen2.5-Coder-7B", 1e-5, 5e-6),
    "paper_deepseek_coder_7b": ("deepseek-ai/deepseek-coder-7b-instruct-v1.5", 1e-5, 5e-6),
    "paper_codeqwen15_7b": ("Qwen/CodeQwen1.5-7B-Chat", 1e-5, 5e-6),
    "paper_starcoder2_15b": ("bigcode/starcoder2-15b", 5e-6, 5e-6),  # larger models: 5e-6
}
EPOCHS = {"paper": 3.0, "repo": 2.0}


@pytest.mark.parametrize("lr_source", ["paper", "repo"])
@pytest.mark.parametrize("experiment", sorted(PRESETS))
def test_preset_holds_the_papers_settings(experiment, lr_source):
    p = P.compose([f"experiment={experiment}", f"lr_source={lr_source}"])
    hub_id, lr_paper, lr_repo = PRESETS[experiment]
    assert p["experiment_name"] == experiment and p["model"]["hub_id"] == hub_id and p["model"]["source"] == "hub"
    train = p["train"]
    # every training section builds into the stage's dataclasses (no unknown key, valid values)
    launch = P.build(LaunchConfig, {k: v for k, v in train.items() if k not in ("common", "run", "variants")}, "train")
    for variant in train["run"]:
        spec = dict(train["variants"][variant])
        mask = P.build(MaskConfig, spec.pop("mask"), variant)
        cfg = P.build(TrainConfig, {**train["common"], **spec, "mask": mask}, variant)
        assert cfg.beta == 0.1 and cfg.rpo_alpha == 1.0
        assert cfg.learning_rate == (lr_paper if lr_source == "paper" else lr_repo)
        assert cfg.epochs == EPOCHS[lr_source]
        assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps * launch.world_size == 128
        assert (cfg.lr_scheduler, cfg.warmup_ratio, cfg.max_length) == ("cosine", 0.03, 2048)
        assert cfg.lora is None and cfg.bf16 is True and cfg.max_pairs is None  # full-parameter, all pairs
    assert train["run"] == ["dpo", "rpo", "target_dpo", "target_rpo"]
    assert (launch.launcher, launch.accelerate, launch.num_processes) == ("accelerate", "zero3", 8)
    assert launch.config_file().is_file()
    assert p["teacher"]["backend"] == "openai" and p["teacher"]["model"] == "gpt-4o"
    assert p["debug"]["max_rounds"] == 5 and p["pairs"]["selection"] == "random"
    assert p["eval"]["benchmarks"] == P.compose(["eval=paper"])["eval"]["benchmarks"]
    assert p["eval"]["sampling"]["temperature"] == 0.0  # greedy pass@1


def test_lr_source_needs_a_paper_preset():
    with pytest.raises(Exception, match="lr_source"):
        P.compose(["lr_source=repo"])
