"""Training speed: Target-DPO (our FocalDPOTrainer, line masks) against plain DPO, same batches.

Three variants per model shape, each trained for a few steps from a fresh random-initialised model
of the same seed, on the same synthetic pairs in the same order:

    trl_dpo     stock ``trl.DPOTrainer`` (plain DPO)
    dpo         our ``FocalDPOTrainer`` with mask ``none`` (plain DPO through our trainer)
    target_dpo  our ``FocalDPOTrainer`` with mask ``line`` (the paper's eq. 6)

No hub, no downloads: ``Qwen2ForCausalLM(Qwen2Config(...))`` with the published shapes of
Qwen2.5-Coder-0.5B-Instruct and -7B-Instruct written out below (random weights), plus a ``tiny``
shape for CPU runs and tests. Pairs are built in-process in the recipe's conversational format
(`iterpref.training.recipe.pairs_dataset`): modules of seed-problem reference solutions as the
chosen code, the same code with a few lines broken as the rejected one, spans from
`iterpref.pairs.diff` exactly as the pair stage stores them.

Measured per variant, after the warm-up steps, with a TrainerCallback (``torch.cuda.synchronize``
at each mark on GPU):
    step s      on_step_end to the next on_step_end: fetching and collating the batch (where the
                focal collator narrows the masks), forward, backward, optimizer, logging
    compute s   on_step_begin to on_step_end (the batch is already collated)
    tokens/s    non-padding tokens of the batch (chosen and rejected rows, prompts included)
                per step s
    peak mem    torch.cuda.max_memory_allocated on GPU; the peak RSS (VmHWM, reset before each
                variant) on CPU
and, outside the steps: TRL's tokenisation, our mask computation (once per example, at dataset
preparation) and the reference log-prob precompute. Goals: target_dpo/dpo step time <= 1.02 on
CPU; target_dpo tokens/s >= 1.0x stock TRL DPO on GPU. Note that TRL 1.16's fused LM head projects
only positions whose label is not -100, so the narrower rejected mask of target_dpo also means
less LM-head work per step (visible with a 152k vocabulary), not only no extra cost.

CPU (every run):
    python bench/bench_train.py --device cpu
GPU (``bench/bench_train_gpu.py`` is this run, for `make bench` on a GPU machine): 0.5B
full-parameter AdamW, 7B LoRA r=16 on all linear layers (full AdamW does not fit one 80 GB card),
bf16, ~1024-token sequences:
    python bench/bench_train.py --device cuda --shapes 0.5b,7b --tokenizer .gpu/tokenizer --out DIR
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import transformers
import trl
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import DPOTrainer

from iterpref import prompts
from iterpref.pairs import diff
from iterpref.records import Pair
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig, dpo_config, pairs_dataset
from iterpref.training.trainer import FocalDPOTrainer

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.result import Metric  # noqa: E402

# how `make bench` runs it (bench/run_all.py). The small shape: its ~0.2-0.6 s steps are
# compute-bound, so 2% shows through per-step jitter; the tiny shape's ~20 ms steps are mostly
# Trainer overhead and scheduler noise (ratios 0.89-1.14 seen).
MAKE_BENCH = {"args": ["--device", "cpu", "--tokenizer", "tiny", "--shapes", "small", "--repeat", "3"]}

REPO = Path(__file__).resolve().parents[1]
SEED_PROBLEMS = REPO / "data" / "seed" / "problems.jsonl"
QWEN_TOKENIZER = Path("/tmp/qwen/q05")

# The published config.json of each instruct model (architecture only; the weights are random).
# Both: hidden_act silu, rms_norm_eps 1e-6, rope_theta 1e6, 32768 positions, no sliding window.
SHAPES: dict[str, dict] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, tie_word_embeddings=True),  # vocab: the tokenizer's
    # CPU-sized but compute-bound (8M parameters, ~0.3-0.6 s steps on one thread)
    "small": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=6,
                  num_key_value_heads=2, vocab_size=None, tie_word_embeddings=True),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
SHAPE_TITLES = {"tiny": "tiny random Qwen2", "small": "small random Qwen2", "0.5b": "Qwen2.5-Coder-0.5B-Instruct",
                "7b": "Qwen2.5-Coder-7B-Instruct"}
COMMON_SHAPE = dict(hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=32768,
                    use_sliding_window=False, attention_dropout=0.0)
DEFAULT_BATCH = {"tiny": 2, "small": 2, "0.5b": 4, "7b": 2}
LORA_BY_DEFAULT = {"7b"}
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")  # conf/experiment/qwen_coder.yaml

VARIANTS = {  # name: mask mode for FocalDPOTrainer, None = stock trl.DPOTrainer
    "trl_dpo": None,
    "dpo": "none",
    "target_dpo": "line",
}


# --------------------------------------------------------------------------- data


# Line mutations that keep the code plausible (an operator, a comparison, a constant).
MUTATIONS = [(" + ", " - "), (" - ", " + "), ("<=", "<"), (">=", ">"), (" < ", " <= "), (" > ", " >= "),
             ("==", "!="), ("!=", "=="), (" and ", " or "), (" or ", " and "), ("True", "False"),
             ("False", "True"), ("+= 1", "-= 1"), ("[1:]", "[2:]"), ("[0]", "[-1]"), ("0", "1"), ("1", "2")]


def _code_snippets(rng: random.Random) -> list[tuple[str, str, str]]:
    """(instruction, signature, reference code) of the seed problems; generated functions if the
    seed file is missing."""
    if SEED_PROBLEMS.exists():
        rows = [json.loads(line) for line in SEED_PROBLEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
        out = [(r["instruction"], r["signature"], r["reference"].rstrip()) for r in rows if r.get("reference")]
        if out:
            return out
    out = []
    for i in range(64):
        a, b, c = rng.randint(2, 7), rng.randint(1, 9), rng.randint(0, 9)
        sig = f"def score_{i}(xs: list[int], k: int = {c}) -> int:"
        code = (f"{sig}\n    total = 0\n    for i, x in enumerate(xs):\n        if x % {a} == 0 and i > k:\n"
                f"            total += x * {b}\n        elif x < k:\n            total -= 1\n    return total")
        out.append((f"Score a list of integers: multiples of {a} after position k count {b} times their value, "
                    "values below k cost one point.", sig, code))
    return out


def _cut_to_tokens(tokenizer, text: str, n: int, sep: str) -> str:
    """``text`` cut at the last ``sep`` before its ``n``-th token (whole lines / words)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= n:
        return text
    end = enc["offset_mapping"][n][0]
    cut = text.rfind(sep, 0, end)
    return text[:cut] if cut > 0 else text[:end]


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _break_lines(code: str, n_lines: int, rng: random.Random) -> str:
    """``code`` with ``n_lines`` body lines changed (an operator or constant flipped, or the
    statement replaced by ``pass``)."""
    lines = code.split("\n")
    body = [i for i, line in enumerate(lines)
            if line.startswith((" ", "\t")) and line.strip() and not line.strip().startswith(("def ", "#", '"""'))]
    for i in rng.sample(body, min(n_lines, len(body))):
        line = lines[i]
        options = [(a, b) for a, b in MUTATIONS if a in line]
        if options:
            a, b = rng.choice(options)
            new = line.replace(a, b, 1)
        else:
            indent = line[: len(line) - len(line.lstrip())]
            new = indent + ("return None" if line.strip() == "pass" else "pass")
        lines[i] = new
    return "\n".join(lines)


def synthetic_pairs(tokenizer, n: int, prompt_tokens: int, completion_tokens: int, error_lines: int = 3,
                    seed: int = 0) -> list[Pair]:
    """``n`` preference pairs of about ``prompt_tokens`` + ``completion_tokens`` tokens.

    The chosen completion is a module of seed-problem reference solutions (cut at a line to fit),
    the rejected one the same module with ``error_lines`` lines broken; spans are computed as the
    pair stage does (`iterpref.pairs.diff` on the rstripped code, shifted into the completion).
    """
    rng = random.Random(seed)
    snippets = _code_snippets(rng)
    fence = _n_tokens(tokenizer, prompts.completion(""))
    pairs = []
    for i in range(n):
        order = rng.sample(range(len(snippets)), len(snippets))
        instruction, signature, _ = snippets[order[0]]
        helpers = [snippets[j][0] for j in order[1:]]
        text = instruction
        while helpers and _n_tokens(tokenizer, prompts.user_message(text, signature)) < prompt_tokens:
            text += "\n\nIt is used together with a helper that does the following. " + helpers.pop()
        budget = prompt_tokens - (_n_tokens(tokenizer, prompts.user_message(text, signature)) - _n_tokens(tokenizer, text))
        instruction = _cut_to_tokens(tokenizer, text, max(budget, 8), " ")
        codes = [snippets[j][2] for j in order]
        code = codes.pop(0)
        while codes and _n_tokens(tokenizer, code) < completion_tokens:
            code += "\n\n\n" + codes.pop(0)
        cho_code = _cut_to_tokens(tokenizer, code, max(completion_tokens - fence, 8), "\n").rstrip()
        rej_code = _break_lines(cho_code, error_lines, rng).rstrip()
        rej_spans, cho_spans = diff.changed_spans(rej_code, cho_code)
        off = prompts.code_offset()
        pairs.append(Pair(
            pair_id=f"bench-{i:04d}", task_id=f"bench/{order[0]}",
            prompt=prompts.user_message(instruction, signature),
            chosen=prompts.completion(cho_code), rejected=prompts.completion(rej_code),
            rejected_spans=diff.shift_spans(rej_spans, off), chosen_spans=diff.shift_spans(cho_spans, off),
            chosen_round=1, rejected_round=0,
        ))
    return pairs


# --------------------------------------------------------------------------- models


def qwen2_config(shape: str, tokenizer) -> Qwen2Config:
    spec = dict(COMMON_SHAPE, **SHAPES[shape])
    if spec["vocab_size"] is None:
        spec["vocab_size"] = len(tokenizer)
    if spec["vocab_size"] < len(tokenizer):
        raise ValueError(f"shape {shape}: vocab {spec['vocab_size']} < tokenizer's {len(tokenizer)}")
    return Qwen2Config(**spec, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.bos_token_id)


def build_model(shape: str, tokenizer, device: str, dtype: torch.dtype, attn: str, seed: int) -> Qwen2ForCausalLM:
    """A random-initialised Qwen2 of ``shape``, created directly on ``device`` (same seed, same weights)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(qwen2_config(shape, tokenizer), dtype=dtype, attn_implementation=attn)
    return model


def load_tokenizer(spec: str):
    """``tiny`` (the test suite's BPE), ``auto`` (Qwen's if at /tmp/qwen/q05, else tiny) or a folder."""
    if spec == "auto":
        spec = str(QWEN_TOKENIZER) if (QWEN_TOKENIZER / "tokenizer.json").exists() else "tiny"
    if spec == "tiny":
        from iterpref.models import build_tiny_tokenizer

        tok, name = build_tiny_tokenizer(4096), "tiny (iterpref.models.build_tiny_tokenizer, 4096)"
    else:
        from transformers import AutoTokenizer

        tok, name = AutoTokenizer.from_pretrained(spec), spec
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, name


# --------------------------------------------------------------------------- probes


class _TRLPrepTimer(DPOTrainer):
    """Times TRL's own dataset preparation (tokenisation), below our mask map in the MRO."""

    def _prepare_dataset(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super()._prepare_dataset(*args, **kwargs)
        self.probe_trl_prep_s = getattr(self, "probe_trl_prep_s", 0.0) + time.perf_counter() - t0
        return out


class _Probe:
    """Records timings and per-step batch statistics; computes nothing that reaches the model."""

    def __init__(self, *args, **kwargs):
        self.probe_batches: list[torch.Tensor] = []
        self.probe_shapes: list[tuple[int, int]] = []
        self.probe_prep_s = 0.0
        self.probe_precompute_s = 0.0
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super()._prepare_dataset(*args, **kwargs)
        self.probe_prep_s += time.perf_counter() - t0
        return out

    def _precompute_ref_logps(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super()._precompute_ref_logps(*args, **kwargs)
        self.probe_precompute_s += time.perf_counter() - t0
        return out

    def training_step(self, model, inputs, *args, **kwargs):
        am, cm, ids = inputs["attention_mask"], inputs["completion_mask"], inputs["input_ids"]
        half = am.shape[0] // 2  # rows are [chosen; rejected]
        # stacked without .item(): no device sync inside the timed step
        self.probe_batches.append(torch.stack([am.sum(), cm[:half].sum(), cm[half:].sum(), ids.sum()]).detach())
        self.probe_shapes.append(tuple(am.shape))
        return super().training_step(model, inputs, *args, **kwargs)


class StockBench(_Probe, _TRLPrepTimer):
    """Stock trl.DPOTrainer (with the probes only)."""


class FocalBench(_Probe, FocalDPOTrainer, _TRLPrepTimer):
    """Our FocalDPOTrainer (with the probes only)."""


class StepClock(TrainerCallback):
    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.begin: list[float] = []
        self.end: list[float] = []
        self.end_cpu: list[float] = []  # this process's CPU time: what a step costs, whatever else runs

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin.append(self._now())

    def on_step_end(self, args, state, control, **kwargs):
        self.end.append(self._now())
        self.end_cpu.append(time.process_time())


class TimedCollator:
    """Wraps a trainer's collator and records the seconds of each call: the only per-step code
    target_dpo runs that dpo does not is in its collator (the focal mask multiplied in)."""

    def __init__(self, collator):
        self.collator = collator
        self.seconds: list[float] = []

    def __call__(self, examples):
        t0 = time.perf_counter()
        out = self.collator(examples)
        self.seconds.append(time.perf_counter() - t0)
        return out


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------- one variant


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def run_variant(variant: str, shape: str, opts, tokenizer, dataset, lora: bool, batch: int) -> dict:
    """Train ``variant`` for warm-up + timed steps on ``dataset``; its timings and batch statistics."""
    cuda = opts.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    mode = VARIANTS[variant]
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    mem_at_start = torch.cuda.memory_allocated() / 2**30 if cuda else 0.0  # > 0: an earlier variant leaked
    rss_reset = False if cuda else _reset_rss_peak()
    t0 = time.perf_counter()
    model = build_model(shape, tokenizer, opts.device, dtype, opts.attn, opts.seed)
    ref_model = None
    if not lora and not opts.precompute_ref_log_probs:
        # a random model has no path TRL could reload its reference from: pass the same init
        ref_model = build_model(shape, tokenizer, opts.device, dtype, opts.attn, opts.seed).eval()
    model_s = time.perf_counter() - t0
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **LORA)
    n_steps = opts.warmup + opts.steps
    with tempfile.TemporaryDirectory() as out_dir:
        # the recipe's own translation to TRL's DPOConfig, as the train stage runs it
        cfg = TrainConfig(loss="dpo", learning_rate=1e-5, max_steps=n_steps, per_device_batch_size=batch,
                          gradient_accumulation_steps=1, lr_scheduler="constant", warmup_ratio=0.0,
                          max_length=opts.max_length, precompute_ref_log_probs=opts.precompute_ref_log_probs,
                          gradient_checkpointing=opts.gradient_checkpointing, bf16=cuda, seed=opts.seed)
        args = dpo_config(cfg, Path(out_dir), "bench", [], use_cpu=not cuda, disable_tqdm=True,
                          dataloader_num_workers=0)
        clock = StepClock(cuda)
        kwargs = dict(model=model, ref_model=ref_model, args=args, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=[clock])
        t0 = time.perf_counter()
        if mode is None:
            ds = dataset.remove_columns([c for c in ("pair_id", "chosen_spans", "rejected_spans") if c in dataset.column_names])
            trainer = StockBench(train_dataset=ds, **kwargs)
        else:
            trainer = FocalBench(train_dataset=dataset, mask=MaskConfig(mode=mode), **kwargs)
        init_s = time.perf_counter() - t0
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        collate = trainer.data_collator = TimedCollator(trainer.data_collator)  # read when train() builds the loader
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _rss_peak_gib()
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    stats = torch.stack(trainer.probe_batches).cpu().tolist() if trainer.probe_batches else []
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    begin, end = clock.begin, clock.end
    w = opts.warmup
    compute = [e - b for b, e in zip(begin[w:], end[w:])]
    step = [end[i] - end[i - 1] for i in range(max(w, 1), len(end))]
    step_cpu = [clock.end_cpu[i] - clock.end_cpu[i - 1] for i in range(max(w, 1), len(end))]
    timed = stats[w:]
    pairs = [s[0] // 2 for s in trainer.probe_shapes[w:]]
    result = {
        "variant": variant, "trainer": "trl.DPOTrainer" if mode is None else "FocalDPOTrainer",
        "mask": "-" if mode is None else mode, "steps": len(end),
        "step_s": step, "step_cpu_s": step_cpu, "compute_s": compute, "collate_s": collate.seconds[w:],
        "tokens_per_step": [s[0] for s in timed],
        "chosen_tokens_per_pair": [s[1] / p for s, p in zip(timed, pairs)],
        "rejected_tokens_per_pair": [s[2] / p for s, p in zip(timed, pairs)],
        "batch_keys": [[*shp, int(s[3])] for shp, s in zip(trainer.probe_shapes, stats)],
        "seq_len": [shp[1] for shp in trainer.probe_shapes[w:]],
        "peak_mem_gib": peak, "peak_reserved_gib": reserved, "mem_at_start_gib": mem_at_start,
        "peak_mem_kind": "cuda max_memory_allocated" if cuda else (
            "VmHWM (reset before the variant)" if rss_reset else "process peak RSS since start"),
        "model_s": model_s, "init_s": init_s, "train_s": train_s,
        "prep_s": trainer.probe_prep_s, "tokenise_s": getattr(trainer, "probe_trl_prep_s", 0.0),
        "precompute_s": trainer.probe_precompute_s,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }
    # the focal trainer's own map over TRL's tokenised rows (stock TRL has none)
    result["mask_s"] = 0.0 if mode is None else result["prep_s"] - result["tokenise_s"]
    del trainer, model, ref_model, clock
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def summarise(runs: list[dict]) -> dict:
    """One variant's runs (``--repeat``) pooled."""
    pool = lambda key: [x for r in runs for x in r[key]]  # noqa: E731
    # medians: one slow step (a first variant's lazy CUDA set-up, a load spike on a shared CPU)
    # would move a mean; the sd beside it still shows the spread
    step_m, step_sd = statistics.median(pool("step_s")), _mean_sd(pool("step_s"))[1]
    comp_m, comp_sd = statistics.median(pool("compute_s")), _mean_sd(pool("compute_s"))[1]
    tokens = statistics.fmean(pool("tokens_per_step"))
    first = runs[0]
    return {
        "variant": first["variant"], "trainer": first["trainer"], "mask": first["mask"],
        "step_s": step_m, "step_sd": step_sd, "step_cpu_s": statistics.median(pool("step_cpu_s")),
        "collate_s": statistics.median(pool("collate_s")),
        "compute_s": comp_m, "compute_sd": comp_sd,
        "timed_steps": len(pool("step_s")),
        "tokens_per_step": tokens, "tokens_per_s": tokens / step_m, "compute_tokens_per_s": tokens / comp_m,
        "seq_len": statistics.fmean(pool("seq_len")),
        "chosen_tokens_per_pair": statistics.fmean(pool("chosen_tokens_per_pair")),
        "rejected_tokens_per_pair": statistics.fmean(pool("rejected_tokens_per_pair")),
        "peak_mem_gib": max(r["peak_mem_gib"] for r in runs), "peak_mem_kind": first["peak_mem_kind"],
        "mem_at_start_gib": max(r["mem_at_start_gib"] for r in runs),
        **{k: statistics.fmean(r[k] for r in runs)
           for k in ("model_s", "init_s", "prep_s", "tokenise_s", "mask_s", "precompute_s")},
        "loss_first": first["loss_first"], "loss_last": first["loss_last"],
    }


# --------------------------------------------------------------------------- report


def environment(opts, tokenizer_name: str) -> dict:
    import datasets

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "trl": trl.__version__, "datasets": datasets.__version__,
        "device": opts.device,
        "device_name": torch.cuda.get_device_name() if opts.device == "cuda" else platform.processor() or platform.machine(),
        "cuda": torch.version.cuda if opts.device == "cuda" else None,
        "threads": torch.get_num_threads(), "tokenizer": tokenizer_name,
        "dtype": "bfloat16 (bf16=True)" if opts.device == "cuda" else "float32",
    }
    with contextlib.suppress(ImportError):
        import peft

        env["peft"] = peft.__version__
    return env


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(report: dict) -> str:
    env, o = report["env"], report["options"]
    lines = [
        "# bench_train: Target-DPO vs DPO training steps",
        "",
        f"device {env['device_name']} ({env['device']}{', CUDA ' + env['cuda'] if env['cuda'] else ''}, "
        f"{env['threads']} threads); python {env['python']}, torch {env['torch']}, transformers "
        f"{env['transformers']}, trl {env['trl']}, datasets {env['datasets']}, peft {env.get('peft', '-')}",
        f"dtype {env['dtype']}, attention {o['attn']}, precompute_ref_log_probs {o['precompute_ref_log_probs']}, "
        f"gradient checkpointing {o['gradient_checkpointing']}, {o['warmup']} warm-up + {o['steps']} timed steps "
        f"x {o['repeat']} repeat(s), seed {o['seed']}; tokenizer {env['tokenizer']}",
        f"pairs: prompt ~{o['prompt_tokens']} + completion ~{o['completion_tokens']} tokens (before the chat "
        f"template), {o['error_lines']} broken lines per rejected completion, max_length {o['max_length']}",
    ]
    for shape, sr in report["shapes"].items():
        c = sr["config"]
        lines += [
            "",
            f"## {shape}: {SHAPE_TITLES[shape]} shape (hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, "
            f"{c['num_attention_heads']}/{c['num_key_value_heads']} heads, ffn {c['intermediate_size']}, vocab "
            f"{c['vocab_size']}, {'tied' if c['tie_word_embeddings'] else 'untied'} embeddings, {sr['params_m']:.1f}M params)",
            "",
            f"{'LoRA r=16 all linear layers (reference = adapter disabled)' if sr['lora'] else 'full-parameter AdamW'}, "
            f"batch {sr['batch']} pairs ({2 * sr['batch']} rows), {sr['pairs']} pairs; pair set built in {sr['data_s']:.1f} s",
            "",
            "| variant | trainer | mask | median step s | median compute s | seq len | tokens/step | tokens/s | chosen tok/pair "
            "| rejected tok/pair | peak mem GiB (at start) | tokenise s | masks s | ref precompute s | init s "
            "| loss first/last |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v in VARIANTS:
            s = sr["variants"].get(v)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"| {v} | error: {s['error']} |" + " |" * 14)
                continue
            lines.append(
                f"| {v} | {s['trainer']} | {s['mask']} | {s['step_s']:.4f} (sd {s['step_sd']:.4f}) | "
                f"{s['compute_s']:.4f} (sd {s['compute_sd']:.4f}) | {s['seq_len']:.0f} | {s['tokens_per_step']:.0f} | "
                f"{s['tokens_per_s']:.0f} | {s['chosen_tokens_per_pair']:.1f} | {s['rejected_tokens_per_pair']:.1f} | "
                f"{s['peak_mem_gib']:.2f} ({s['mem_at_start_gib']:.2f}) | {s['tokenise_s']:.2f} | {s['mask_s']:.2f} | "
                f"{s['precompute_s']:.2f} | "
                f"{s['init_s']:.1f} | {_f(s['loss_first'], 4)}/{_f(s['loss_last'], 4)} |")
        r = sr.get("ratios", {})
        lines += [""]
        if r:
            lines += [
                f"- target_dpo / dpo step time: **{r['target_over_dpo_step']:.3f}** (compute only "
                f"{r['target_over_dpo_compute']:.3f}; median of the {len(r['target_over_dpo_step_paired'])} per-repeat "
                f"ratios of median step times {r['target_over_dpo_step_paired_median']:.3f}; CPU time per step "
                f"{r['target_over_dpo_step_cpu']:.3f}; run-to-run spread of the per-repeat ratios "
                f"{min(r['target_over_dpo_step_paired']):.3f}-{max(r['target_over_dpo_step_paired']):.3f})",
                f"- what the focal masks add per step (collator, the only per-step code dpo does not run): "
                f"{r['collate_ms']['target_dpo']:.2f} ms vs {r['collate_ms']['dpo']:.2f} ms, "
                f"**{r['mask_overhead_share']:+.2%}** of a dpo step; CPU goal: step time ratio <= 1.02",
                f"- target_dpo vs stock TRL DPO tokens/s: **{r['target_vs_trl_tokens_per_s']:.3f}x** (compute only "
                f"{r['target_vs_trl_compute_tokens_per_s']:.3f}x); GPU goal >= 1.0x",
                f"- dpo (our trainer, no mask) vs stock TRL DPO tokens/s: {r['dpo_vs_trl_tokens_per_s']:.3f}x",
                f"- rejected tokens in the loss per pair: target_dpo {r['target_rejected_tokens']:.1f} vs dpo "
                f"{r['dpo_rejected_tokens']:.1f} ({r['target_rejected_share']:.1%})",
            ]
        lines.append(f"- same batches in every variant: {'yes' if sr.get('same_batches') else 'NO'}")
        lines.append(f"- peak memory: {next((s['peak_mem_kind'] for s in sr['variants'].values() if 'peak_mem_kind' in s), '-')}")
    return "\n".join(lines) + "\n"


def ratios(variants: dict, runs: dict) -> dict:
    if not all(v in variants and "error" not in variants[v] for v in VARIANTS):
        return {}
    t, d, s = variants["target_dpo"], variants["dpo"], variants["trl_dpo"]
    # Paired per repeat (the variants of one repeat run back to back), on median step times: robust
    # to a shared CPU whose load drifts over the run.
    paired = [statistics.median(a["step_s"]) / statistics.median(b["step_s"])
              for a, b in zip(runs["target_dpo"], runs["dpo"])]
    return {
        "target_over_dpo_step_paired_median": statistics.median(paired), "target_over_dpo_step_paired": paired,
        "target_over_dpo_step": t["step_s"] / d["step_s"],
        "target_over_dpo_step_cpu": t["step_cpu_s"] / d["step_cpu_s"],
        # what the masks add to a step, from the one place they act per step (the collator)
        "mask_overhead_share": (t["collate_s"] - d["collate_s"]) / d["step_s"],
        "collate_ms": {"target_dpo": t["collate_s"] * 1e3, "dpo": d["collate_s"] * 1e3},
        "target_over_dpo_compute": t["compute_s"] / d["compute_s"],
        "target_vs_trl_tokens_per_s": t["tokens_per_s"] / s["tokens_per_s"],
        "target_vs_trl_compute_tokens_per_s": t["compute_tokens_per_s"] / s["compute_tokens_per_s"],
        "dpo_vs_trl_tokens_per_s": d["tokens_per_s"] / s["tokens_per_s"],
        "target_rejected_tokens": t["rejected_tokens_per_pair"], "dpo_rejected_tokens": d["rejected_tokens_per_pair"],
        "target_rejected_share": t["rejected_tokens_per_pair"] / d["rejected_tokens_per_pair"],
    }


@contextlib.contextmanager
def _quiet():
    """No progress bars (datasets maps, TRL's precompute) while the bench runs; restored after."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    old = os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--shapes", default=None, help="comma list of tiny,small,0.5b,7b (default: tiny on cpu, 0.5b,7b on cuda)")
    ap.add_argument("--tokenizer", default="auto",
                    help="a tokenizer folder, 'tiny', or 'auto' (/tmp/qwen/q05 if present, else tiny)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default: tiny 2, 0.5b 4, 7b 2)")
    ap.add_argument("--lora", choices=("auto", "on", "off"), default="auto", help="auto: LoRA for 7b only")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="default 64 on cpu, 256 on cuda")
    ap.add_argument("--completion-tokens", type=int, default=None, help="default 128 on cpu, 768 on cuda")
    ap.add_argument("--error-lines", type=int, default=3, help="broken lines per rejected completion")
    ap.add_argument("--max-length", type=int, default=TrainConfig.max_length)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--repeat", type=int, default=1, help="run the three variants this many times, order rotated")
    ap.add_argument("--precompute-ref-log-probs", action=argparse.BooleanOptionalAction,
                    default=TrainConfig.precompute_ref_log_probs)
    ap.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, flash_attention_2)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on cpu, unchanged on cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ",".join(VARIANTS))
    ap.add_argument("--out", default=None, help="folder for bench_train.md and bench_train.json")
    bench_result.add_json_option(ap)
    o = ap.parse_args(argv)
    cuda = o.device == "cuda"
    o.shapes = (o.shapes or ("0.5b,7b" if cuda else "tiny")).split(",")
    o.variants = o.variants.split(",")
    for s in o.shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; expected {sorted(SHAPES)}")
    for v in o.variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; expected {list(VARIANTS)}")
    if o.warmup < 1 or o.steps < 1:
        ap.error("need --warmup >= 1 and --steps >= 1")
    o.prompt_tokens = o.prompt_tokens or (256 if cuda else 64)
    o.completion_tokens = o.completion_tokens or (768 if cuda else 128)
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    return o


def main(argv: list[str] | None = None) -> dict:
    opts = parse_args(argv)
    threads = torch.get_num_threads()
    if opts.threads or opts.device == "cpu":
        torch.set_num_threads(opts.threads or 1)
    try:
        with _quiet():
            return _run(opts)
    finally:
        torch.set_num_threads(threads)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run(opts) -> dict:
    tokenizer, tok_name = load_tokenizer(opts.tokenizer)
    report = {"env": environment(opts, tok_name),
              "options": {k: getattr(opts, k) for k in ("device", "shapes", "variants", "batch", "lora", "prompt_tokens",
                                                        "completion_tokens", "error_lines", "max_length", "warmup", "steps",
                                                        "repeat", "precompute_ref_log_probs", "gradient_checkpointing",
                                                        "attn", "seed")},
              "shapes": {}}
    out = Path(opts.out) if opts.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    def save():
        if out:
            (out / "bench_train.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
            (out / "bench_train.md").write_text(markdown(report))

    for shape in opts.shapes:
        batch = opts.batch or DEFAULT_BATCH[shape]
        lora = opts.lora == "on" or (opts.lora == "auto" and shape in LORA_BY_DEFAULT)
        n_pairs = batch * (opts.warmup + opts.steps)
        t0 = time.perf_counter()
        dataset = pairs_dataset(synthetic_pairs(tokenizer, n_pairs, opts.prompt_tokens, opts.completion_tokens,
                                                opts.error_lines, opts.seed))
        data_s = time.perf_counter() - t0
        config = qwen2_config(shape, tokenizer)
        with torch.device("meta"):
            params = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())
        sr = report["shapes"][shape] = {
            "config": {k: getattr(config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                        "num_attention_heads", "num_key_value_heads", "vocab_size",
                                                        "tie_word_embeddings", "max_position_embeddings", "rms_norm_eps")}
            | {"rope_theta": COMMON_SHAPE["rope_theta"]},
            "params_m": params / 1e6, "lora": lora, "lora_config": LORA if lora else None, "batch": batch,
            "pairs": n_pairs, "data_s": data_s, "runs": {v: [] for v in opts.variants}, "variants": {},
        }
        _log(f"[{shape}] {params / 1e6:.1f}M params, {'LoRA' if lora else 'full-parameter'}, batch {batch}, "
             f"{n_pairs} pairs built in {data_s:.1f} s")
        for rep in range(opts.repeat):
            k = rep % len(opts.variants)
            for variant in opts.variants[k:] + opts.variants[:k]:
                t0 = time.perf_counter()
                try:
                    res = run_variant(variant, shape, opts, tokenizer, dataset, lora, batch)
                except (torch.cuda.OutOfMemoryError, RuntimeError, ValueError) as e:
                    _log(f"[{shape} {variant}] failed:\n{traceback.format_exc()}")
                    sr["variants"][variant] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                    gc.collect()
                    if opts.device == "cuda":
                        torch.cuda.empty_cache()
                    save()
                    continue
                sr["runs"][variant].append(res)
                sr["variants"][variant] = summarise(sr["runs"][variant])
                s = sr["variants"][variant]
                _log(f"[{shape} {variant}] step {s['step_s']:.4f} s, {s['tokens_per_s']:.0f} tok/s, peak "
                     f"{s['peak_mem_gib']:.2f} GiB, init {res['init_s']:.1f} s (masks {res['mask_s']:.2f} s, precompute "
                     f"{res['precompute_s']:.2f} s), {time.perf_counter() - t0:.1f} s in all")
                save()
        keys = [tuple(map(tuple, r["batch_keys"])) for runs in sr["runs"].values() for r in runs]
        sr["same_batches"] = bool(keys) and all(k == keys[0] for k in keys)
        sr["ratios"] = ratios(sr["variants"], sr["runs"])
        save()
    print(markdown(report), flush=True)
    report["failed"] = [f"{s}/{v}" for s, sr in report["shapes"].items() for v, r in sr["variants"].items() if "error" in r]
    save()
    bench_result.write(opts.json, "bench_train", headline(report), report["env"])
    return report


def headline(report: dict) -> list[Metric]:
    """The ratios `make bench` reports, per shape, with the issue's goals: target_dpo / dpo step
    time <= 1.02 on CPU; target_dpo tokens/s >= 1.0x stock TRL DPO on GPU."""
    cuda = report["options"]["device"] == "cuda"
    metrics = []
    for shape, sr in report["shapes"].items():
        r = sr.get("ratios")
        if r:
            metrics += [
                Metric(f"{shape}: target_dpo / dpo step time", r["target_over_dpo_step"], "x"),
                Metric(f"{shape}: target_dpo / dpo CPU time per step", r["target_over_dpo_step_cpu"], "x"),
                *([] if cuda else [Metric(f"{shape}: step time the focal masks add (collator) / dpo step",
                                          1 + r["mask_overhead_share"], "x", "<= 1.02")]),
                Metric(f"{shape}: target_dpo / stock TRL DPO tokens/s", r["target_vs_trl_tokens_per_s"], "x",
                       ">= 1.0" if cuda else None),
                Metric(f"{shape}: dpo (ours) / stock TRL DPO tokens/s", r["dpo_vs_trl_tokens_per_s"], "x"),
            ]
    return metrics


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
