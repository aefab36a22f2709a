"""Generation backends behind one interface (see `base.Generator`)."""

from __future__ import annotations


def make_generator(backend: str, model: str, device: str = "auto", **options):
    """The generator a config names.

    ``hf``: transformers in-process on ``device`` (``options``: ``dtype``).
    ``openai``: an OpenAI-compatible server (``options``: ``base_url``, ``api_key_env``,
    ``max_concurrency``, ``timeout_s``, ``max_retries``; ``device`` is unused).
    """
    if backend == "hf":
        from iterpref.llm.hf import HFGenerator

        return HFGenerator(model, device=device, **options)
    if backend == "openai":
        from iterpref.llm.openai_api import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    raise ValueError(f"unknown generation backend {backend!r}; expected 'hf' or 'openai'")
