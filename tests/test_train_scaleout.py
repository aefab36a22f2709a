"""The train stage scaled out: accelerate DDP on CPU (gloo), kill and resume, LoRA end to end,
gradient checkpointing. Every run is the real `python stages/train.py VARIANT` in a temporary
work folder (params.yaml, models/student = the tiny model, data/pairs.jsonl), as DVC runs it.

Tolerances. DDP and one process see the same pairs in the same steps (the global batch is the
same; accelerate's seeded sampler shards each global batch), but the arithmetic differs: each
rank pads its half of the batch to its own length and the gradients are averaged by an
all-reduce instead of inside one mean. In fp32 that moves a loss by about 1e-7; the weights, after
AdamW (whose update m / sqrt(v) turns a tiny gradient difference on a near-zero gradient into a
visible one), agree to far less than one step's size: we allow 1e-2 * lr * steps per weight.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_training import CASES, make_pair

from iterpref import params as P
from iterpref.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "stages" / "train.py"


def pairs(n: int):
    """``n`` distinct pairs from the training tests' cases (renamed copies)."""
    names = [c for c in CASES if c != "insert_only"]
    out = []
    for i in range(n):
        p = make_pair(names[i % len(names)])
        p.pair_id, p.task_id = f"{p.pair_id}-{i}", f"{p.task_id}-{i}"
        p.prompt = p.prompt.replace("Fix the function", f"Fix function number {i}")
        out.append(p)
    return out


def workdir(tmp: Path, model_dir: Path, n_pairs: int, overrides: list[str]) -> Path:
    """A folder laid out as the repository is when DVC runs the train stage."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "models").mkdir(exist_ok=True)
    os.symlink(model_dir, tmp / "models" / "student")
    write_jsonl(tmp / "data" / "pairs.jsonl", pairs(n_pairs))
    base = ["experiment=smoke", "logging=disabled", "runtime.threads=1", "train.common.max_pairs=null",
            "train.common.lr_scheduler=constant", "train.common.warmup_ratio=0.0", "train.common.bf16=false",
            "train.common.learning_rate=1e-3"]
    (tmp / "params.yaml").write_text(P.dump(P.compose(base + overrides)))
    return tmp


def run_stage(folder: Path, variant: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    proc = subprocess.run([sys.executable, str(STAGE), variant], cwd=folder, env=env, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"stage failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def curve(folder: Path, variant: str) -> list[dict]:
    return json.loads((folder / "models" / "trained" / variant / "train_metrics.json").read_text())["log_history"]


def weights(folder: Path, variant: str) -> dict[str, torch.Tensor]:
    return load_file(folder / "models" / "trained" / variant / "model.safetensors")


def max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


# --------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_two_processes_match_one(tiny_model_dir, tmp_path):
    """2-process DDP (gloo) against one process, same global batch of 4 pairs, 3 steps."""
    steps, lr = 3, 1e-3
    common = ["train.common.max_steps=3"]
    one = workdir(tmp_path / "one", tiny_model_dir, 12, common + ["train.common.per_device_batch_size=4"])
    two = workdir(tmp_path / "two", tiny_model_dir, 12, common + [
        "train.common.per_device_batch_size=2", "train.launcher=accelerate", "train.accelerate=ddp",
        "train.num_processes=2"])
    run_stage(one, "target_dpo")
    proc = run_stage(two, "target_dpo")
    log = proc.stdout + proc.stderr
    assert "accelerate.commands.launch" in log  # the stage re-launched itself

    a, b = curve(one, "target_dpo"), curve(two, "target_dpo")
    assert [h["step"] for h in a] == [h["step"] for h in b] == [1, 2, 3]
    for ha, hb in zip(a, b):
        for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
            assert ha[key] == pytest.approx(hb[key], rel=1e-5, abs=1e-6), (ha["step"], key, ha[key], hb[key])
    assert a[-1]["loss"] != a[0]["loss"]  # it trained
    report = json.loads((two / "reports" / "train" / "target_dpo.json").read_text())
    assert report["processes"] == 2 and report["steps"] == steps

    diff = max_weight_diff(weights(one, "target_dpo"), weights(two, "target_dpo"))
    start = load_file(Path(tiny_model_dir) / "model.safetensors")
    moved = max_weight_diff(start, weights(one, "target_dpo"))
    assert moved > lr  # the weights moved by several steps' worth
    assert diff <= 1e-2 * lr * steps, (diff, moved)

    # The error-token masks were computed once (by the main rank; the other read its cache), the
    # reference log-probs once, split between the ranks: each ran 6 of the 12 pairs (3 batches of 2).
    assert len(re.findall(r"Error-token masks for train \(line\):\s+0%", log)) == 1, log[-3000:]
    ref_bars = re.findall(r"Computing reference log probs for train dataset: 100%.*? (\d+)/(\d+)", log)
    assert ref_bars and {b for b in ref_bars} == {("3", "3")}, ref_bars
    assert not (two / ".cache" / "train" / "target_dpo").exists() or not any((two / ".cache" / "train" / "target_dpo").iterdir())
