"""Stage `reference_logprobs`: the reference model's (models/student) log-prob of every completion
token of the held-out pairs and of the pairs training draws (``train.common``'s ``max_pairs`` and
``seed``), under ``train.common``'s cut, autocast and batch -> data/reference_logprobs/heldout.pt and
training.pt (see iterpref.probe.reference). Every `probe@VARIANT` reads them, so a sweep over beta or
the learning rate runs the reference over the pairs once, and DVC restores the files from its cache
when the model, the pairs and those settings are ones it has seen.
"""

import sys
import time
from pathlib import Path

import torch

from iterpref import params as P
from iterpref import runtime
from iterpref.cli import command
from iterpref.config.fields import build
from iterpref.probe import reference
from iterpref.records import Pair, read_jsonl
from iterpref.training import logprobs
from iterpref.training.recipe import TrainConfig, training_sample


@command
def main() -> None:
    params = P.load()
    runtime.configure(params)
    cfg = build(TrainConfig, params["train"]["common"], "train.common")
    use_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    sets = {"heldout": read_jsonl("data/pairs_heldout.jsonl", Pair),
            "training": training_sample(read_jsonl("data/pairs.jsonl", Pair), cfg)}
    out = Path("data/reference_logprobs")
    out.mkdir(parents=True, exist_ok=True)
    for name, pairs in sets.items():
        start = time.time()
        logprobs.save(out / f"{name}.pt", reference.compute("models/student", pairs, cfg, use_cpu), cfg)
        print(f"reference log-probs: {len(pairs)} {name} pairs -> {out / name}.pt in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
