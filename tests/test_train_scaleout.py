"""The train stage scaled out: accelerate DDP, FSDP and DeepSpeed ZeRO-3 on CPU (gloo), kill and
resume, LoRA end to end, gradient checkpointing. Every run is the real `python stages/train.py
VARIANT` in a temporary work folder (params.yaml, models/student = the tiny model,
data/pairs.jsonl), as DVC runs it.

Tolerances. 2 processes and one see the same pairs in the same steps (the global batch is the
same; accelerate's seeded sampler shards each global batch), but the arithmetic differs: each
rank pads its half of the batch to its own length and the gradients are averaged by an
all-reduce (FSDP, ZeRO-3: a reduce-scatter onto each rank's shard) instead of inside one mean.
In fp32 that moves a loss by about 1e-7; the weights, after
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

import processes
import pytest
import torch
from safetensors.torch import load_file
from test_training import ALL, CASES, build_trainer, load_tiny, make_pair

from iterpref import params as P
from iterpref.llm.served import free_port
from iterpref.records import write_jsonl
from iterpref.training import record

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
    write_jsonl(tmp / "data" / "pairs_heldout.jsonl", pairs(n_pairs + 4)[n_pairs:])  # the probe's, along training
    base = ["experiment=smoke", "logging=disabled", "runtime.threads=1", "train.common.max_pairs=null",
            "train.common.lr_scheduler=constant", "train.common.warmup_ratio=0.0", "train.common.bf16=false",
            "train.common.learning_rate=1e-3"]
    (tmp / "params.yaml").write_text(P.dump(P.compose(base + overrides)))
    return tmp


def run_stage(folder: Path, variant: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    proc = processes.run([sys.executable, str(STAGE), variant], cwd=folder, env=env, capture_output=True, text=True)
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


# --------------------------------------------------------------------------- DDP, FSDP, ZeRO-3

# the evaluate stage's settings for a quick HumanEval run on a trained tiny model
QUICK_EVAL = ["eval.benchmarks=[humaneval]", "eval.limit=2", "eval.sanity_gate=0", "eval.sampling.max_new_tokens=8"]
# what accelerate calls each shipped config's processes on CPU, as train_metrics.json records it
DISTRIBUTED = {"ddp": "MULTI_CPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}


@pytest.fixture(scope="module")
def three_steps(tiny_model_dir, tmp_path_factory):
    """The train stage on 12 pairs for 3 steps of a global batch of 4, by launch: ``one`` process
    (batch 4) or 2 processes (2 each) under the shipped ``ddp``, ``fsdp`` or ``zero3`` config.
    Each launch runs once per module; returns its folder and log."""
    runs = {}

    def run(launch: str) -> tuple[Path, str]:
        if launch not in runs:
            settings = ["train.common.max_steps=3", "train.common.probe_points=-1"] + QUICK_EVAL
            if launch == "one":
                settings += ["train.common.per_device_batch_size=4"]
            else:
                settings += ["train.common.per_device_batch_size=2", "train.launcher=accelerate",
                             f"train.accelerate={launch}", "train.num_processes=2",
                             f"train.main_process_port={free_port('127.0.0.1')}"]
            folder = workdir(tmp_path_factory.mktemp(launch), tiny_model_dir, 12, settings)
            proc = run_stage(folder, "target_dpo")
            runs[launch] = folder, proc.stdout + proc.stderr
        return runs[launch]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["ddp", "fsdp", "zero3"])
def test_two_processes_match_one(launch, three_steps, tiny_model_dir):
    """2 CPU processes (gloo) against one, same global batch, 3 steps: DDP, FSDP (parameters
    sharded over the 2 ranks) and DeepSpeed ZeRO-3 follow the same losses and end at the same weights."""
    if launch == "zero3":
        pytest.importorskip("deepspeed", reason="ZeRO-3 needs the deepspeed extra (pip install -e .[deepspeed])")
    steps, lr = 3, 1e-3
    one, _ = three_steps("one")
    two, log = three_steps(launch)
    assert "accelerate.commands.launch" in log  # the stage re-launched itself

    a, b = curve(one, "target_dpo"), curve(two, "target_dpo")
    assert [h["step"] for h in a] == [h["step"] for h in b] == [1, 2, 3]
    for ha, hb in zip(a, b):
        for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
            assert ha[key] == pytest.approx(hb[key], rel=1e-5, abs=1e-6), (ha["step"], key, ha[key], hb[key])
    assert a[-1]["loss"] != a[0]["loss"]  # it trained
    report = json.loads((two / "reports" / "train" / "target_dpo.json").read_text())
    assert report["processes"] == 2 and report["steps"] == steps
    metrics = json.loads((two / "models" / "trained" / "target_dpo" / "train_metrics.json").read_text())
    assert metrics["distributed"] == DISTRIBUTED[launch]

    # a plain HF folder: the same tensors as one process wrote (tied lm_head not written twice)
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

    # every rank ran the policy over the probe's pairs at each step (sharded weights need them all), the main
    # one recorded them: the log-probs one process recorded, to the weights' agreement
    recorded = [record.load(run / "models" / "trained" / "target_dpo" / record.FILE)["steps"] for run in (one, two)]
    assert sorted(recorded[0]) == sorted(recorded[1]) == [1, 2, 3]
    for step, sets in recorded[0].items():
        assert {name: len(lp) for name, lp in sets.items()} == {"heldout": 4, "training": 12}
        for name, by_pair in sets.items():
            for pid, sides in by_pair.items():
                for side, lp in sides.items():
                    assert torch.allclose(lp, recorded[1][step][name][pid][side], atol=1e-4), (step, name, pid, side)


@pytest.mark.slow
def test_fsdp_model_loads_scores_and_evaluates(three_steps):
    """The folder FSDP saved loads with transformers; its per-token log-probs on a pair equal the
    one-process model's (the weights agree to 1e-5, so the log-probs to far less than 1e-4),
    and the evaluate stage generates and scores HumanEval tasks with it."""
    from test_training import ALL, load_tiny

    one, _ = three_steps("one")
    fsdp, _ = three_steps("fsdp")
    pair = ALL[0]
    trained = Path("models") / "trained" / "target_dpo"
    logps = {}
    for name, folder in (("one", one / trained), ("fsdp", fsdp / trained), ("start", one / "models" / "student")):
        model, tok = load_tiny(folder)
        messages = [{"role": "user", "content": pair.prompt}, {"role": "assistant", "content": pair.chosen}]
        ids = tok.apply_chat_template(messages, return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        logps[name] = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    assert (logps["one"] - logps["fsdp"]).abs().max().item() <= 1e-4
    assert (logps["one"] - logps["start"]).abs().max().item() > 1e-2  # training changed them

    report = evaluate_stage(fsdp, "target_dpo")
    assert report["tasks"] == 2 and report["generation"]["model_dir"] == "models/trained/target_dpo"


def evaluate_stage(folder: Path, variant: str) -> dict:
    """Run ``stages/evaluate.py VARIANT humaneval`` in ``folder``; its report."""
    proc = processes.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), variant, "humaneval"],
                          cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "reports" / "eval" / variant / "humaneval.json").read_text())


# --------------------------------------------------------------------------- kill and resume


@pytest.mark.slow
def test_killed_stage_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    """SIGKILL the stage after its first checkpoint; the re-run resumes there and ends with the
    weights of an uninterrupted run. Resuming restores weights, optimizer, scheduler, RNG and the
    data position, so on one CPU process the arithmetic is the same: we expect equality to 1e-7."""
    settings = ["train.common.per_device_batch_size=2", "train.common.save_steps=2", "train.common.max_steps=-1",
                "train.common.probe_points=4"]
    whole = workdir(tmp_path / "whole", tiny_model_dir, 24, settings)  # 12 steps, the probe recorded at 3, 6, 9, 12
    cut = workdir(tmp_path / "cut", tiny_model_dir, 24, settings)
    run_stage(whole, "target_dpo")

    from iterpref.training.workdir import last_checkpoint

    proc = subprocess.Popen([sys.executable, str(STAGE), "target_dpo"], cwd=cut, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    cache = cut / ".cache" / "train" / "target_dpo"
    deadline = time.time() + 300
    found = None
    while proc.poll() is None and time.time() < deadline and found is None:
        keys = cache.iterdir() if cache.exists() else []
        found = next((c for k in keys if (c := last_checkpoint(k / "checkpoints", 1))), None)
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the stage ended before it could be killed"
    processes.end_group(proc)
    assert found is not None and not (cut / "models" / "trained" / "target_dpo" / "train_metrics.json").exists()

    again = run_stage(cut, "target_dpo")
    log = again.stdout + again.stderr
    assert "resuming from" in log
    # the prepared data (tokens, masks, reference log-probs) came from the work folder's cache
    assert "Computing reference log probs" not in log and "Error-token masks for train" not in log
    report = json.loads((cut / "reports" / "train" / "target_dpo.json").read_text())
    assert 2 <= report["resumed_from_step"] < 12 and report["steps"] == 12
    a, b = curve(whole, "target_dpo"), curve(cut, "target_dpo")
    assert [h["step"] for h in b] == list(range(1, 13))
    assert [h["loss"] for h in a] == pytest.approx([h["loss"] for h in b], abs=1e-7)
    assert max_weight_diff(weights(whole, "target_dpo"), weights(cut, "target_dpo")) <= 1e-7
    assert not any(cache.iterdir())  # the work folder is removed once training finished
    # the probe's record along training: every point, whether recorded before the kill (kept in the work folder) or after
    recorded = [record.load(run / "models" / "trained" / "target_dpo" / record.FILE)["steps"] for run in (whole, cut)]
    assert sorted(recorded[0]) == sorted(recorded[1]) == [3, 6, 9, 12]
    for step, sets in recorded[0].items():
        for name, by_pair in sets.items():
            for pid, sides in by_pair.items():
                for side, lp in sides.items():
                    assert torch.allclose(lp, recorded[1][step][name][pid][side], atol=1e-6), (step, name, pid, side)


# --------------------------------------------------------------------------- LoRA, merged, evaluated


@pytest.mark.slow
def test_lora_trains_merges_and_evaluates(tiny_model_dir, tmp_path):
    """LoRA through the stage: models/trained/VARIANT is a plain merged HF folder (no adapter
    files) whose linear weights moved and embeddings did not, and the evaluate stage scores it."""
    folder = workdir(tmp_path / "lora", tiny_model_dir, 8, [
        "train.common.per_device_batch_size=4", "train.common.max_steps=2", "train.common.learning_rate=1e-2",
        "train.common.lora={r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: all-linear}"] + QUICK_EVAL)
    run_stage(folder, "target_dpo")
    out = folder / "models" / "trained" / "target_dpo"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    merged, start = weights(folder, "target_dpo"), load_file(Path(tiny_model_dir) / "model.safetensors")
    assert merged.keys() == start.keys()
    changed = {k for k in merged if not torch.equal(merged[k], start[k])}
    assert any("q_proj" in k for k in changed) and any("mlp" in k for k in changed)
    assert not any("embed" in k or "norm" in k for k in changed)

    report = evaluate_stage(folder, "target_dpo")
    assert report["tasks"] == 2 and report["generation"]["model_dir"] == "models/trained/target_dpo"


# --------------------------------------------------------------------------- gradient checkpointing


def test_gradient_checkpointing_is_on_and_changes_nothing(tiny_model_dir, tmp_path):
    """`train.common.gradient_checkpointing` turns on transformers' activation checkpointing, which
    recomputes activations in the backward pass: same losses and weights (fp32, to 1e-6)."""
    runs = {}
    for on in (False, True):
        trainer = build_trainer(*load_tiny(tiny_model_dir), ALL, tmp_path / str(on), mode="line", max_steps=2,
                                per_device_batch_size=2, learning_rate=1e-3, gradient_checkpointing=on)
        assert trainer.args.activation_checkpointing is on
        trainer.train()
        assert trainer.model.is_activation_checkpointing is on
        runs[on] = ([h["loss"] for h in trainer.state.log_history if "loss" in h],
                    {k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    assert runs[True][0] == pytest.approx(runs[False][0], abs=1e-6)
    assert max_weight_diff(runs[True][1], runs[False][1]) <= 1e-6


# --------------------------------------------------------------------------- launcher settings


def test_shipped_accelerate_configs_load_and_build_the_command():
    from accelerate.commands.config.config_args import load_config_from_file

    from iterpref.training.launch import LaunchConfig, accelerate_command

    kinds = {name: load_config_from_file(str(ROOT / "conf" / "accelerate" / f"{name}.yaml")).distributed_type.value
             for name in ("ddp", "fsdp", "zero3")}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}
    zero3 = yaml_load(ROOT / "conf" / "accelerate" / "zero3.yaml")["deepspeed_config"]
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True

    cfg = LaunchConfig(launcher="accelerate", accelerate="zero3", num_processes=16, num_machines=2, machine_rank=1,
                       main_process_ip="10.0.0.1")
    cmd = accelerate_command(cfg, ["stages/train.py", "dpo"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[-2:] == ["stages/train.py", "dpo"]
    flags = dict(zip(cmd[3:-2:2], cmd[4:-2:2]))
    assert flags == {"--config_file": str(ROOT / "conf" / "accelerate" / "zero3.yaml"), "--num_processes": "16",
                     "--num_machines": "2", "--machine_rank": "1", "--main_process_port": "29500",
                     "--main_process_ip": "10.0.0.1"}
    assert cfg.world_size == 16 and LaunchConfig(num_processes=8).world_size == 1  # python: one process


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_launch_settings_are_checked(monkeypatch, tmp_path):
    from iterpref.training import launch

    with pytest.raises(ValueError, match="train.launcher"):
        launch.LaunchConfig(launcher="torchrun")
    with pytest.raises(ValueError, match="multiple of"):
        launch.LaunchConfig(launcher="accelerate", num_processes=3, num_machines=2)
    with pytest.raises(FileNotFoundError, match=r"shipped: \['ddp', 'fsdp', 'zero3'\]"):
        launch.LaunchConfig(launcher="accelerate", accelerate="zero2").config_file()
    monkeypatch.delenv(launch.LAUNCHED_ENV, raising=False)
    # on CPU a kind that only runs elsewhere (here TPU) would silently run as DDP: refused before anything is launched
    tpu = tmp_path / "tpu.yaml"
    tpu.write_text("distributed_type: XLA\n")
    with pytest.raises(ValueError, match=r"\(XLA\) needs GPUs"):
        launch.relaunch_if_needed(launch.LaunchConfig(launcher="accelerate", accelerate=str(tpu)), ["x.py"], use_cpu=True)
    launch.relaunch_if_needed(launch.LaunchConfig(launcher="python"), ["x.py"], use_cpu=True)  # returns: no relaunch
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launch.threads_per_rank(2) == 1 and launch.threads_per_rank(1) == 1 and launch.threads_per_rank(16) == 8


def test_unknown_launch_key_names_the_field(tmp_path):
    from iterpref import params as P
    from iterpref.training.launch import LaunchConfig

    with pytest.raises(ValueError, match=r"train: unknown key\(s\) \['num_gpus'\]"):
        P.build(LaunchConfig, {"launcher": "accelerate", "num_gpus": 8}, "train")
