"""The GPU half of the training benchmark: `bench_train.py --device cuda` on the real shapes of
Qwen2.5-Coder-0.5B (full-parameter) and -7B (LoRA r=16), random-initialised, bf16, ~1024-token
pairs. `make bench` runs it where torch sees a GPU (skipped elsewhere); its goal is target_dpo
tokens/s at least 1.0x stock TRL DPO. Measured on an H100: bench/results/bench_train_h100_*.md.

Usage: python bench/bench_train_gpu.py [--tokenizer DIR] [any bench_train.py option]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402

MAKE_BENCH = {"args": ["--repeat", "2", "--steps", "8"], "needs": "cuda"}  # how `make bench` runs it (bench/run_all.py)

if __name__ == "__main__":
    sys.exit(1 if bench_train.main(["--device", "cuda", "--shapes", "0.5b,7b", *sys.argv[1:]])["failed"] else 0)
