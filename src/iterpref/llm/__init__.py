"""Generation backends behind one interface (see `base.Generator`)."""

from __future__ import annotations


def make_generator(backend: str, model: str, device: str = "auto"):
    """The generator a config names: ``hf`` (transformers in-process) for now."""
    if backend == "hf":
        from iterpref.llm.hf import HFGenerator

        return HFGenerator(model, device=device)
    raise ValueError(f"unknown generation backend {backend!r}; expected 'hf'")
