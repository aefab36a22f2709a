"""HFGenerator's decoder against a baseline, or against itself in another dtype.

Greedy, the evaluate stage's sampling (at most 320 new tokens, stop after a closed code block,
batch 32), the first N HumanEval tasks in the pipeline's prompt format. Both sides run back to
back in one process on one loaded model, except that where ours packs its weights (bf16 on CPU,
`pack_linears`) `model.generate` and an older hf.py get the model as transformers loads it
(`--vs generate-packed`: `model.generate` on our packed model); the machine's load average is printed
because on a shared 2-core machine other processes change absolute times (compare ratios).
Tokens/s counts the tokens of the final (stop-truncated) replies, the same for both sides.
Both sides' answers are then scored by HumanEval's harness in the sandbox: pass@1 of each and
the tasks whose verdict differs.

    python bench/bench_generation.py --tasks 64                  # ours vs transformers' model.generate
    python bench/bench_generation.py --tasks 64 --dtype bfloat16 --vs generate-packed  # scheduling alone
    python bench/bench_generation.py --tasks 64 --vs git:5071c0b # ours vs hf.py at a git revision
    python bench/bench_generation.py --tasks 164 --dtype bfloat16 --vs float32   # ours bf16 vs ours fp32
    python bench/bench_generation.py --tasks 64 --prompt-lookup 8 --vs lookup:0  # drafts vs none
    python bench/bench_generation_gpu.py   # on a GPU: random weights of the 0.5B's shape (see there)
    options: --model models/student --dtype float32 --batch-size 32 --max-new-tokens 320 --threads 2
             --prompt-lookup 0 (ours: draft tokens a step may check) --device cpu
             --random-init (random weights of --model's shape; replies are not scored)
             --eos-rate 0 (with --random-init: sample, EOS with this probability each step)
             --warmup (each side once untimed first)
"""

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AttentionInterface

from iterpref.evaluation.humaneval import HumanEval
from iterpref.llm.base import CLOSED_CODE_BLOCK, SamplingConfig, truncate_at_stop
from iterpref.llm.hf import HFGenerator
from iterpref.llm.hf.attention import batch_invariant_attention
from iterpref.llm.hf.packed import PackedLinear
from iterpref.llm.hf.prefixes import Prefixes
from iterpref.prompts import extract_code
from iterpref.sandbox import SandboxConfig

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.result import Metric  # noqa: E402

# how `make bench` runs it (bench/run_all.py): the student `dvc repro model` builds, bf16 as the
# evaluate stage decodes it, 16 tasks
MAKE_BENCH = {"args": ["--model", "models/student", "--tasks", "16", "--batch-size", "16", "--max-new-tokens", "192",
                       "--dtype", "bfloat16"]}
GOAL_VS_GENERATE = ">= 2"  # the decoder's goal against transformers' model.generate


def humaneval_conversations(n: int) -> list:
    """The first n HumanEval tasks as the evaluate stage asks them (the `iterpref` prompt)."""
    return [t.conversation("iterpref") for t in HumanEval().load(limit=n)]


def random_model_dir(template: str, seed: int = 0) -> str:
    """A folder holding a random-initialised model of ``template``'s config and
    ``template``'s tokenizer: for machines where no pretrained weights travel (a GPU machine)."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tempfile.mkdtemp(prefix="random_model_")
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(template)).save_pretrained(folder)
    for name in os.listdir(template):
        if name.startswith(("tokenizer", "chat_template", "special_tokens", "vocab", "merges")):
            shutil.copy(os.path.join(template, name), folder)
    return folder


def end_replies_at_rate(gen: HFGenerator, rate: float) -> None:
    """Make every decoding step, sampled at temperature 1, end a reply with probability ``rate``:
    a random model's replies otherwise never end, and every row would run to max_new_tokens.
    A hook on the output layer sets the EOS logit to log(rate / (1 - rate)) above the log-sum-exp
    of all the others, at every position (both sides pay the same extra work)."""
    eos = min(gen.eos_ids)
    odds = torch.tensor(rate / (1 - rate)).log()

    def hook(module, inputs, logits):
        logits[..., eos] = float("-inf")
        logits[..., eos] = logits.float().logsumexp(-1).to(logits.dtype) + odds
        return logits

    gen.model.get_output_embeddings().register_forward_hook(hook)


def generate_baseline(gen: HFGenerator, slots: dict):
    """transformers' `model.generate` on static left-padded batches (longest prompts first, as
    `chat` sorts them), stopping a batch when every row has EOS or a closed code block.
    ``slots["row_steps"]`` counts the rows times the steps each batch decoded: a row whose reply
    ended still takes its slot until the batch's longest reply ends."""
    from transformers import StoppingCriteria

    tok = gen.tokenizer

    class CodeBlockClosed(StoppingCriteria):
        def __init__(self, prompt_len):
            self.prompt_len = prompt_len

        def __call__(self, input_ids, scores, **kwargs):
            texts = tok.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(CLOSED_CODE_BLOCK.search(t)) for t in texts], device=input_ids.device)

    def chat(convs, sampling):
        order = sorted(range(len(convs)), key=lambda i: -len(str(convs[i])))
        replies = [""] * len(convs)
        for start in range(0, len(order), sampling.batch_size):
            idx = order[start:start + sampling.batch_size]
            texts = [tok.apply_chat_template(convs[i], tokenize=False, add_generation_prompt=True) for i in idx]
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(gen.device)
            with torch.inference_mode():
                sample = dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
                out = gen.model.generate(**batch, max_new_tokens=sampling.max_new_tokens, pad_token_id=tok.pad_token_id,
                                         **(sample if sampling.temperature > 0 else dict(do_sample=False)),
                                         stopping_criteria=[CodeBlockClosed(batch["input_ids"].shape[1])])
            slots["row_steps"] = slots.get("row_steps", 0) + len(idx) * (out.shape[1] - batch["input_ids"].shape[1])
            for i, ids in zip(idx, out[:, batch["input_ids"].shape[1]:]):
                text = tok.decode(ids, skip_special_tokens=True)
                replies[i] = truncate_at_stop(text, sampling.stop, sampling.stop_after_code)
        return replies

    return chat


def load_at(rev: str, name: str):
    """src/iterpref/llm/<name>.py as it was at git revision ``rev``, as a module (hf.py: a revision
    where it was one file, a17ec41 or older). An old hf.py
    registers its own attention under our name when it loads: today's is registered back, so
    our decoder keeps its own (the old one, which handles one new token a step, works too)."""
    source = subprocess.run(["git", "show", f"{rev}:src/iterpref/llm/{name}.py"], check=True,
                            capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"{name}_at_rev.py")
    with open(path, "w") as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location(f"{name}_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    AttentionInterface.register("iterpref_decode", batch_invariant_attention)
    return module


@contextlib.contextmanager
def timing_phases(gen: HFGenerator) -> Iterator[dict]:
    """Time ``gen``'s prompt prefills and decode steps while the block runs: yields the dict it
    fills (``prefill_s``, ``step_s``, ``steps``, ``row_steps``: rows summed over the steps,
    ``prompt_tokens``, ``reused_tokens``: those prefilled from a stored prefix). The block starts
    with no stored prefixes, so a warm-up run leaves it none to reuse."""
    phases = dict.fromkeys(("prefill_s", "step_s", "steps", "row_steps", "prompt_tokens", "reused_tokens"), 0)
    prefill, forward = gen._prefill, gen.model.forward
    gen.prefixes = Prefixes()
    load = gen.prefixes.load

    def counted_load(prompt, cache):
        reused = load(prompt, cache)
        phases["prompt_tokens"] += len(prompt)
        phases["reused_tokens"] += reused
        return reused

    def timed_prefill(*args, **kwargs):
        start = time.perf_counter()
        try:
            return prefill(*args, **kwargs)
        finally:
            phases["prefill_s"] += time.perf_counter() - start

    def timed_forward(*args, **kwargs):
        if kwargs.get("attention_mask") is None:  # a prefill, timed above
            return forward(*args, **kwargs)
        start = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            phases["step_s"] += time.perf_counter() - start
            phases["steps"] += 1
            phases["row_steps"] += kwargs["input_ids"].shape[0]

    gen._prefill, gen.model.forward, gen.prefixes.load = timed_prefill, timed_forward, counted_load
    try:
        yield phases
    finally:
        del gen._prefill, gen.model.forward, gen.prefixes.load  # the instance attributes: back to the methods


def git_baseline(gen: HFGenerator, rev: str):
    """`HFGenerator.chat` as src/iterpref/llm/hf.py was at git revision ``rev``, on our model."""
    module = load_at(rev, "hf")
    old = module.HFGenerator.__new__(module.HFGenerator)
    old.__dict__.update(gen.__dict__)  # same model, tokenizer, device, EOS ids
    return old.chat


def score(replies: list[str], n: int) -> dict[str, bool]:
    """HumanEval verdicts of ``replies`` (the first n tasks), by the evaluate stage's scorer."""
    bench = HumanEval()
    tasks = bench.load(limit=n)
    verdicts = bench.score(tasks, [extract_code(r) for r in replies], SandboxConfig(), timeout_s=3.0, workers=2)
    return {v.task_id: v.passed for v in verdicts}


def timed(label: str, chat, convs, sampling, tok) -> tuple[list[str], float, int]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    replies = chat(convs, sampling)
    wall = time.perf_counter() - start
    tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in replies)
    print(f"{label:>28}: {wall:7.1f} s  {tokens / wall:6.1f} reply tokens/s  "
          f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return replies, wall, tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", help="our decoder's dtype (and the baseline's)")
    ap.add_argument("--prompt-lookup", type=int, default=0, help="ours: draft tokens a decode step may check")
    ap.add_argument("--vs", default="generate",
                    help="baseline: 'generate' (model.generate on the model as transformers loads it), "
                         "'generate-packed' (on our packed model), 'git:<rev>' (hf.py at a revision), "
                         "'lookup:<n>' (ours with n draft tokens), or a dtype name (our decoder in that dtype)")
    ap.add_argument("--baseline-first", action="store_true", help="run the baseline before ours")
    ap.add_argument("--warmup", action="store_true",
                    help="run each side once untimed first (on a GPU the first call at each new shape is slow)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--random-init", action="store_true",
                    help="random weights of --model's shape (GPU machines, where no weights travel); not scored")
    ap.add_argument("--eos-rate", type=float, default=0.0,
                    help="with --random-init: sample at temperature 1 with EOS this likely at every step, "
                         "so replies end at different lengths (mean about 1/rate)")
    bench_result.add_json_option(ap)
    args = ap.parse_args(argv)
    if args.eos_rate and not args.random_init:
        ap.error("--eos-rate needs --random-init (it rewrites the model's output)")
    torch.set_num_threads(args.threads)
    model = random_model_dir(args.model) if args.random_init else args.model
    gen = HFGenerator(model, device=args.device, dtype=args.dtype, prompt_lookup=args.prompt_lookup)
    if args.eos_rate:
        end_replies_at_rate(gen, args.eos_rate)
    tok = gen.tokenizer
    convs = humaneval_conversations(args.tasks)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=1.0 if args.eos_rate else 0, stop=[],
                              stop_after_code=True, batch_size=args.batch_size)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.threads} threads, {os.cpu_count()} CPUs"
    print(f"{len(convs)} HumanEval tasks, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
          f"{'random-init ' if args.random_init else ''}{args.dtype} on {device}"
          + (f", sampled, EOS rate {args.eos_rate}" if args.eos_rate else ""))

    slots: dict = {}
    other = None  # the baseline when it is our decoder too

    def unpacked() -> HFGenerator:
        """Ours with the model as transformers loads it (a second copy where ours packed its
        weights), for model.generate and an older hf.py."""
        if not any(isinstance(m, PackedLinear) for m in gen.model.modules()):
            return gen
        plain = HFGenerator(model, device=args.device, dtype=args.dtype, pack_weights=False)
        if args.eos_rate:
            end_replies_at_rate(plain, args.eos_rate)
        return plain

    if args.vs == "generate":
        label, baseline = f"model.generate {args.dtype}", generate_baseline(unpacked(), slots)
    elif args.vs == "generate-packed":
        label, baseline = f"model.generate {args.dtype} packed", generate_baseline(gen, slots)
    elif args.vs.startswith("lookup:"):
        other = HFGenerator.__new__(HFGenerator)
        other.__dict__.update(gen.__dict__, prompt_lookup=int(args.vs[7:]))  # the same loaded model
        label, baseline = f"ours {args.dtype} lookup {other.prompt_lookup}", other.chat
    elif args.vs.startswith("git:"):
        label, baseline = f"hf.py@{args.vs[4:]} {args.dtype}", git_baseline(unpacked(), args.vs[4:])
    else:
        other = HFGenerator(model, device=args.device, dtype=args.vs)
        if args.eos_rate:
            end_replies_at_rate(other, args.eos_rate)
        label, baseline = f"ours {args.vs}", other.chat
    ours_label = f"ours {args.dtype}" + (f" lookup {args.prompt_lookup}" if args.prompt_lookup else "")
    runs = [(label, baseline), (ours_label, gen.chat)]
    if not args.baseline_first:
        runs.reverse()
    results = {}
    for _, chat in runs if args.warmup else []:
        chat(convs, sampling)
    for name, chat in runs:
        if other is not None:  # no prompts stored by an earlier run: each timed run starts cold
            other.prefixes = Prefixes()
        with timing_phases(gen) if name == ours_label else contextlib.nullcontext() as phases:
            results[name] = timed(name, chat, convs, sampling, tok)
        if phases is not None:
            print(f"{'':>28}  prefill {phases['prefill_s']:.1f} s ({phases['reused_tokens']} of "
                  f"{phases['prompt_tokens']} prompt tokens from stored prefixes); {phases['steps']} decode steps "
                  f"{phases['step_s']:.1f} s, {1e3 * phases['step_s'] / max(phases['steps'], 1):.0f} ms each, "
                  f"{phases['row_steps'] / max(phases['steps'], 1):.1f} rows on average")
    (theirs, t_theirs, theirs_tokens), (ours, t_ours, ours_tokens) = results[label], results[ours_label]
    speed = (ours_tokens / t_ours) / (theirs_tokens / t_theirs)  # sampled sides write different tokens
    print(f"{ours_label} is {speed:.2f}x as fast as {label} (reply tokens/s)")
    if slots:
        # The most a scheduler that never idles a row can gain over static batches at the same
        # cost per step: static batches spend row_steps slots on theirs_tokens tokens.
        print(f"{label} used {theirs_tokens / slots['row_steps']:.2f} of its {slots['row_steps']} row-steps "
              f"for reply tokens: a never-idle scheduler at the same step cost is at most "
              f"{slots['row_steps'] / theirs_tokens:.2f}x as fast on decoding")
    identical = sum(a == b for a, b in zip(ours, theirs))
    print(f"identical replies: {identical}/{len(ours)}")
    metrics = [Metric(f"{ours_label} / {label} speed", speed, "x", GOAL_VS_GENERATE if args.vs == "generate" else None),
               Metric(f"{ours_label} reply tokens/s", ours_tokens / t_ours, "tok/s"),
               Metric("identical replies", identical, f"of {len(ours)}")]
    if not args.random_init:  # random weights pass nothing
        ours_ok, theirs_ok = (score(replies, args.tasks) for replies in (ours, theirs))
        differ = [t for t in ours_ok if ours_ok[t] != theirs_ok[t]]
        print(f"pass@1: ours {sum(ours_ok.values())}/{len(ours_ok)}, {label} {sum(theirs_ok.values())}/{len(theirs_ok)}; "
              f"verdicts differ on {len(differ)} task(s){': ' + ', '.join(differ) if differ else ''}")
        metrics.append(Metric("pass@1 verdicts that differ", len(differ), f"of {len(ours_ok)}"))
    bench_result.write(args.json, "bench_generation", metrics, {
        "model": args.model, "tasks": args.tasks, "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "threads": args.threads, "vs": args.vs,
        "prompt_lookup": args.prompt_lookup, "device": device, "random_init": args.random_init,
        "eos_rate": args.eos_rate})


if __name__ == "__main__":
    sys.exit(main())
