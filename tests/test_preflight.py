"""`make run`'s preflight: a warning when the params ask for bfloat16 on a CPU without bf16 kernels."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from iterpref import params as P
from iterpref.config import preflight

FP32 = "dvc exp run -S train.common.bf16=false -S eval.dtype=float32"


def test_the_keys_that_ask_for_bf16():
    assert preflight.bf16_keys(P.compose([])) == ["train.common.bf16", "eval.dtype"]  # the embedded default
    assert preflight.bf16_keys(P.compose(["experiment=qwen_coder"])) == ["eval.dtype"]  # training: auto
    assert preflight.bf16_keys(P.compose(["train.common.bf16=auto", "eval.dtype=auto"])) == []


@pytest.mark.parametrize("kernels", [False, True])
def test_the_warning_names_the_keys_and_a_command_that_clears_it(monkeypatch, kernels):
    monkeypatch.setattr(preflight, "can_pack", lambda: kernels)
    params = P.compose(["runtime.device=cpu"])
    message = preflight.warning(params)
    if kernels:
        assert message is None
        return
    assert message.startswith("WARNING: params.yaml asks for bfloat16 (train.common.bf16, eval.dtype)")
    assert FP32 in message
    overrides = [w for w in shlex.split(FP32) if "=" in w]
    assert preflight.warning(P.compose(["runtime.device=cpu", *overrides])) is None  # the command it names clears it


def test_the_module_prints_the_warning_exactly_when_this_cpu_lacks_the_kernels(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(P.dump(P.compose(["runtime.device=cpu"])))
    proc = subprocess.run([sys.executable, "-m", "iterpref.config.preflight", "--params", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (FP32 in proc.stdout) == (not preflight.can_pack()), proc.stdout
