"""Checks `make run` makes before `dvc repro`: whether the run's params suit this machine.

bfloat16 on a CPU is fast only where oneDNN has bfloat16 kernels (AVX-512 BF16 or AMX). Elsewhere
(AVX2 CPUs: AMD before Zen 4, Intel before Cooper Lake) torch falls back to generic kernels: a
training step under bf16 autocast took 27 times as long as in fp32 on an AVX2 EPYC
(bench/bench_cpu_bf16.py; docs/benchmarks.md#cpu-without-bf16), and the embedded default, which
asks for bf16 in training and decoding, would take many hours there instead of about 40 minutes.
This prints a warning naming the params and the fp32 command, and changes nothing:

    python -m iterpref.config.preflight [--params params.yaml]     # prints the warning, or nothing
"""

from __future__ import annotations

from iterpref import params as P
from iterpref.cli import ArgumentParser, command
from iterpref.llm.hf.packed import can_pack


def bf16_keys(params: dict) -> list[str]:
    """The params keys that ask for bfloat16 on the CPU: ``train.common.bf16`` when true (``auto``
    is fp32 on a CPU) and ``eval.dtype`` when bfloat16."""
    keys = ["train.common.bf16"] if params["train"]["common"]["bf16"] is True else []
    return keys + (["eval.dtype"] if params["eval"]["dtype"] in ("bfloat16", "bf16") else [])


def warning(params: dict) -> str | None:
    """The warning for ``params`` on this machine: bf16 asked for where the stages run on a CPU
    without bfloat16 kernels; None when there is nothing to say."""
    import torch

    keys = bf16_keys(params)
    on_cpu = params["runtime"]["device"] == "cpu" or not torch.cuda.is_available()
    if not keys or not on_cpu or can_pack():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    fp32 = " ".join(f"-S {k}={'false' if k == 'train.common.bf16' else 'float32'}" for k in keys)
    return (f"WARNING: params.yaml asks for bfloat16 ({', '.join(keys)}), but this CPU has no bfloat16 kernels "
            f"(torch: {capability}; they need AVX-512 BF16 or AMX): training steps run about 27x slower than "
            f"in fp32 and decoding far slower too, so this run may take many hours. For fp32: "
            f"dvc exp run {fp32} (its results will differ from a bf16 run's).")


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="iterpref.config.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    message = warning(P.load(args.params))
    if message:
        print(message, flush=True)


if __name__ == "__main__":
    main()
