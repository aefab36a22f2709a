"""Generation backends behind one interface (see `base.Generator`)."""

from __future__ import annotations

# Settings of a generator section left out of the response cache's identity: the sampling
# settings go into each request's key on their own, and the others never change a reply.
NOT_IN_CACHE_KEY = ("sampling", "cache_dir", "api_key_env", "max_concurrency", "timeout_s", "max_retries")


def make_generator(backend: str, model: str, device: str = "auto", **options):
    """The generator a config names.

    ``hf``: transformers in-process on ``device`` (``options``: ``dtype``, ``prompt_lookup``).
    ``openai``: an OpenAI-compatible server (``options``: ``base_url``, ``api_key_env``,
    ``max_concurrency``, ``timeout_s``, ``max_retries``; ``device`` is unused).
    ``vllm``, ``sglang``, ``llama_cpp``: that server started on ``model`` (``options``:
    ``dtype``, ``server``, ``max_concurrency``, ``timeout_s``, ``max_retries``; see
    `served.ServedGenerator`: start and stop it with `served.running`).
    """
    from iterpref.llm.served import ENGINES

    if backend == "hf":
        from iterpref.llm.hf import HFGenerator

        return HFGenerator(model, device=device, **options)
    if backend == "openai":
        from iterpref.llm.openai_api import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    if backend in ENGINES:
        from iterpref.llm.served import ServedGenerator

        return ServedGenerator(model, engine=backend, **options)
    raise ValueError(f"unknown generation backend {backend!r}; expected one of {['hf', 'openai', *ENGINES]}")


def from_config(cfg: dict):
    """The generator and `SamplingConfig` a generator section describes (a params ``teacher``
    section with ``kind: llm``, or ``problems.synthesize.teacher``).

    ``backend``, ``model``, ``device`` and the backend's options make the generator (see
    `make_generator`); ``sampling`` is a `SamplingConfig`. An in-process (``hf``) model batches
    concurrent calls together (`batching.BatchingGenerator`). ``cache_dir`` (absent or None: no
    cache) caches replies on disk (`cache.CachedGenerator`), keyed by every setting not in
    `NOT_IN_CACHE_KEY`, ``materialize`` included (which model a ``model`` folder holds): two
    sections with the same settings and ``cache_dir`` share their cached replies.
    """
    from iterpref.llm.base import SamplingConfig

    cfg = {k: v for k, v in cfg.items() if k != "kind"}
    sampling = SamplingConfig(**cfg.get("sampling", {}))
    options = {k: v for k, v in cfg.items()
               if k not in ("materialize", "backend", "model", "device", "sampling", "cache_dir")}
    generator = make_generator(cfg["backend"], cfg["model"], cfg.get("device", "auto"), **options)
    if cfg["backend"] == "hf":  # one in-process model: batch the callers' requests together
        from iterpref.llm.batching import BatchingGenerator

        generator = BatchingGenerator(generator, max_batch=sampling.batch_size)
    if cfg.get("cache_dir") is not None:
        from iterpref.llm.cache import CachedGenerator

        identity = {k: v for k, v in cfg.items() if k not in NOT_IN_CACHE_KEY}
        generator = CachedGenerator(generator, cfg["cache_dir"], identity)
    return generator, sampling
