"""Evaluate any local model folder outside the pipeline, with the evaluate stage's code path.

    python -m iterpref.evaluation models/student humaneval mbpp --prompt evalplus --dtype bfloat16 \
        --out reports/adhoc/qwen05b

    python -m iterpref.evaluation .cache/gguf/<sha256>.gguf humaneval --prompt evalplus --backend llama_cpp \
        --server-arg=-np --server-arg=16 --out reports/adhoc/qwen05b-llama-cpp

Writes ``<out>/<benchmark>.json`` and ``<out>/<benchmark>.samples.jsonl`` like the stage does.
``--backend`` vllm / sglang / llama_cpp starts that server on the model (llama.cpp: a GGUF file)
for the run, as ``eval.backend`` does, with ``--server-arg`` words appended to its command.
"""

from __future__ import annotations

import json
from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, at_least_one, command
from iterpref.evaluation import registry
from iterpref.evaluation.run import evaluate, generator_for
from iterpref.llm.base import SamplingConfig
from iterpref.llm.served import ENGINES, ServerConfig
from iterpref.records import write_jsonl
from iterpref.sandbox import SandboxConfig


def data_files(items: list[str]) -> dict[str, str]:
    """``--data KEY=FILE`` items as a dict, each KEY a benchmark and each FILE an existing file."""
    data = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or key not in registry.names():
            raise UserError(f"--data {item!r}: expected BENCHMARK=FILE with BENCHMARK one of {registry.names()}")
        if not Path(path).is_file():
            raise UserError(f"--data {item!r}: {path}: no such file")
        data[key] = path
    return data


def parser() -> ArgumentParser:
    """iterpref-eval's arguments."""
    ap = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other modes: re-score a samples file with the official evaluator, without generating: "
               "iterpref-rescore BENCHMARK SAMPLES [--against RESULT] (python -m iterpref.evaluation.rescore); "
               "compare two variants' results with McNemar's test: iterpref-compare A B.")
    ap.add_argument("model", help="a local HF model folder (llama_cpp: a GGUF file)")
    ap.add_argument("benchmarks", nargs="+", choices=registry.names())
    ap.add_argument("--out", required=True, help="folder for the result files")
    ap.add_argument("--prompt", default="iterpref", choices=["iterpref", "evalplus"])
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--backend", default="hf", choices=["hf", *ENGINES])
    ap.add_argument("--server-arg", action="append", default=[], metavar="WORD",
                    help="a word appended to the server's command, e.g. --server-arg=-np --server-arg=16")
    ap.add_argument("--prompt-lookup", type=int, default=0, help="hf: draft tokens a decode step may check (0: off)")
    # the defaults are conf/eval/default.yaml's (tests/test_cli.py holds them equal)
    ap.add_argument("--limit", type=at_least_one, default=None, help="the first N tasks of each benchmark")
    ap.add_argument("--max-new-tokens", type=at_least_one, default=320)
    ap.add_argument("--batch-size", type=at_least_one, default=32)
    ap.add_argument("--threads", type=at_least_one, default=2)
    ap.add_argument("--data", action="append", default=[], metavar="KEY=FILE",
                    help="a local data file, e.g. humaneval_plus=/data/HumanEvalPlus-v0.1.10.jsonl")
    return ap


@command
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    data = data_files(args.data)
    if not Path(args.model).exists():
        raise UserError(f"{args.model}: no such model folder{' or GGUF file' if args.backend == 'llama_cpp' else ''}")
    import torch

    torch.set_num_threads(args.threads)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, stop_after_code=True, batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = ServerConfig(extra_args=args.server_arg)
    with generator_for(args.backend, args.model, args.dtype, threads=args.threads, prompt_lookup=args.prompt_lookup,
                       server=server) as (generator, generation):
        for name in args.benchmarks:
            report, samples = evaluate(generator, registry.get(name, data), sampling, SandboxConfig(),
                                       limit=args.limit, prompt_style=args.prompt, generation=generation)
            (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            write_jsonl(out / f"{name}.samples.jsonl", samples)
            print(f"{name}: pass@1 = {report['pass@1']:.3f} ({report['passed']}/{report['tasks']}); "
                  f"errors {report['error_types']}; timings {report['timings_s']}")


if __name__ == "__main__":
    main()
