"""Shrinking-batch decoding (HFGenerator.decode) vs transformers' model.generate.

Greedy, same prompts, same stop rule (EOS or a closed code block), one run each on the
first N HumanEval tasks; prints both wall times and the ratio.

    python bench/bench_generation.py [--model models/student] [--tasks 32] [--max-new-tokens 320]
"""

import argparse
import time

import torch

from iterpref.evaluation.humaneval import load_tasks
from iterpref.llm.base import CLOSED_CODE_BLOCK, SamplingConfig
from iterpref.llm.hf import HFGenerator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = HFGenerator(args.model, device="cpu")
    tok = gen.tokenizer
    convs = [t.conversation() for t in load_tasks(limit=args.tasks)]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, stop_after_code=True)

    start = time.perf_counter()
    gen.chat(convs, sampling)
    shrinking = time.perf_counter() - start

    from transformers import StoppingCriteria

    class CodeBlockClosed(StoppingCriteria):
        def __init__(self, prompt_len):
            self.prompt_len = prompt_len

        def __call__(self, input_ids, scores, **kwargs):
            texts = tok.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(CLOSED_CODE_BLOCK.search(t)) for t in texts])

    start = time.perf_counter()
    for i in range(0, len(convs), args.batch_size):
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in convs[i:i + args.batch_size]]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen.model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False,
                               pad_token_id=tok.pad_token_id,
                               stopping_criteria=[CodeBlockClosed(batch["input_ids"].shape[1])])
    generate = time.perf_counter() - start
    print(f"{args.tasks} tasks, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, {args.threads} threads")
    print(f"shrinking-batch decode: {shrinking:.1f} s")
    print(f"model.generate:         {generate:.1f} s")
    print(f"speed-up: {generate / shrinking:.2f}x")


if __name__ == "__main__":
    main()
