"""An independent check of the probe's position groups: plain transformers in fp32, its own
tokenisation and grouping (nothing from iterpref.probe or iterpref.training), on a run's pairs.

For each pair side: the rendered chat, the tokens that touch the completion, each token's group by
the rule of docs/probe.md (starts before the first changed character of either side: prefix; else
overlaps a changed line: D+ / D-; else suffix), and the shift log p_policy - log p_reference of
every token. Prints each group's mean shift over pairs (token mean within a pair) and how many
pair sides have a token count per group different from reports/probe/VARIANT.json's.

    python bench/probe_fp32_check.py dpo              # the held-out pairs
    python bench/probe_fp32_check.py dpo --training   # the pairs dpo trained on
"""

from __future__ import annotations

import argparse
import json
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

SIDES = {"chosen": ("chosen_prefix", "chosen_fix", "chosen_suffix"),
         "rejected": ("rejected_prefix", "rejected_error", "rejected_suffix")}


def token_log_probs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[i] | ids[:i]) for i >= 1, in fp32."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def side_groups(tok, pair: dict, side: str, boundary: int) -> tuple[list[int], int, list[int]]:
    """The rendered chat's ids, the index of the first completion token, and each completion
    token's group index (0 prefix, 1 changed, 2 suffix)."""
    text = tok.apply_chat_template([{"role": "user", "content": pair["prompt"]},
                                    {"role": "assistant", "content": pair[side]}], tokenize=False)
    start = text.rindex(pair[side])
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    first = next(i for i, (_, end) in enumerate(offsets) if end > start)
    groups = []
    for i in range(first, len(ids)):
        a = offsets[i][0] - start
        b = max((offsets[i + 1][0] if i + 1 < len(ids) else len(text)) - start, offsets[i][1] - start)
        changed = any(s < b and a < e for s, e in pair[f"{side}_spans"])
        groups.append(0 if a < boundary else 1 if changed else 2)
    return ids, first, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--training", action="store_true", help="the pairs the variant trained on")
    parser.add_argument("--max-pairs", type=int, default=16, help="train.common.max_pairs of the run")
    parser.add_argument("--seed", type=int, default=0, help="train.common.seed of the run")
    args = parser.parse_args()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained("models/student")
    reference = AutoModelForCausalLM.from_pretrained("models/student").eval()
    policy = AutoModelForCausalLM.from_pretrained(f"models/trained/{args.variant}").eval()
    if args.training:
        pairs = [json.loads(line) for line in open("data/pairs.jsonl")]
        if len(pairs) > args.max_pairs:
            pairs = random.Random(args.seed).sample(pairs, args.max_pairs)
    else:
        pairs = [json.loads(line) for line in open("data/pairs_heldout.jsonl")]
    report = json.load(open(f"reports/probe/{args.variant}.json"))
    counts = {r["pair_id"]: r for r in (report["in_sample"] if args.training else report)["per_pair"]}
    means, differ = {g: [] for names in SIDES.values() for g in names}, 0
    for pair in pairs:
        boundary = min([s[0] for s in pair["chosen_spans"] + pair["rejected_spans"]], default=10**9)
        for side, names in SIDES.items():
            ids, first, groups = side_groups(tok, pair, side, boundary)
            shift = (token_log_probs(policy, ids) - token_log_probs(reference, ids))[first - 1:]
            for g, name in enumerate(names):
                values = [float(x) for x, k in zip(shift, groups) if k == g]
                if values:
                    means[name].append(sum(values) / len(values))
            if [groups.count(g) for g in range(3)] != [counts[pair["pair_id"]][f"{n}_tokens"] for n in names]:
                differ += 1
    print(f"{args.variant}, {'training' if args.training else 'held-out'} pairs ({len(pairs)}), fp32 mean shift:")
    for name, values in means.items():
        print(f"  {name}: {sum(values) / len(values):+.4f} over {len(values)} pairs" if values else f"  {name}: -")
    print(f"pair sides whose group token counts differ from reports/probe/{args.variant}.json: {differ} of {2 * len(pairs)}")


if __name__ == "__main__":
    main()
