"""Generation backends behind one interface (see `base.Generator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from iterpref.config.fields import spec
from iterpref.llm.base import SamplingConfig
from iterpref.llm.served import ENGINES, Engine, ServerConfig
from iterpref.models import ModelConfig

Backend = Literal["hf", "openai", Engine]  # in process, an OpenAI-compatible API, or a server the stage starts

# Settings of a generator section left out of the response cache's identity: the sampling
# settings go into each request's key on their own, and the others never change a reply.
NOT_IN_CACHE_KEY = ("sampling", "cache_dir", "api_key_env", "max_concurrency", "timeout_s", "max_retries")


@dataclass
class GeneratorConfig:
    """A generator section (a ``teacher`` with ``kind: llm``, ``problems.synthesize.teacher``):
    the keys `from_config` reads. The options a backend does not use may be left out.

    Parameters:
        backend (`str`): ``hf`` (transformers in-process), ``openai`` (an OpenAI-compatible
            API), or a server the stage starts: ``vllm``, ``sglang``, ``llama_cpp``.
        model (`str`): a hub id, a model folder (``models/teacher``) or, for ``llama_cpp``, a
            ``.gguf`` file; the API's model name for ``openai``.
        sampling (`SamplingConfig`): how replies are decoded.
        materialize (`ModelConfig` or `None`): a model the ``teacher_model`` stage builds
            into ``models/teacher/`` first; None: none.
        kind (`str` or `None`): ``llm`` in a ``teacher`` section.
        device (`str`): ``auto``, ``cpu`` or ``cuda`` (``hf``).
        dtype (`str`): the weights' dtype (``auto``: bf16 on GPU, fp32 on CPU).
        prompt_lookup (`int`): draft tokens a decode step may check (``hf``; 0: off).
        base_url (`str` or `None`): the API's address (``openai``; None: OpenAI's).
        api_key_env (`str` or `None`): the environment variable that holds the API key.
        max_concurrency (`int` or `None`): requests in flight at once (every backend but
            ``hf`` needs it set, as ``timeout_s`` and ``max_retries``).
        timeout_s (`float` or `None`): one request's time limit.
        max_retries (`int` or `None`): retries of a failed request (429, 5xx, time-outs).
        cache_dir (`str` or `None`): replies cached on disk here; None: no cache.
        server (`ServerConfig` or `None`): the server's launch settings (``vllm``, ``sglang``,
            ``llama_cpp``).
    """

    backend: Backend
    model: str
    sampling: SamplingConfig
    materialize: ModelConfig | None = None
    kind: Literal["llm"] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    prompt_lookup: int = spec(0, ge=0)
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int | None = spec(None, ge=1)
    timeout_s: float | None = spec(None, gt=0)
    max_retries: int | None = spec(None, ge=0)
    cache_dir: str | None = None
    server: ServerConfig | None = None

    def __post_init__(self) -> None:
        if self.backend != "hf":
            unset = [k for k in ("max_concurrency", "timeout_s", "max_retries") if getattr(self, k) is None]
            if unset:
                raise ValueError(f"backend {self.backend!r} sends requests: {', '.join(unset)} must be set "
                                 f"(null is only for backend 'hf', which does not use them)")


def make_generator(backend: str, model: str, device: str = "auto", **options):
    """The generator a config names.

    ``hf``: transformers in-process on ``device`` (``options``: ``dtype``, ``prompt_lookup``).
    ``openai``: an OpenAI-compatible server (``options``: ``base_url``, ``api_key_env``,
    ``max_concurrency``, ``timeout_s``, ``max_retries``; ``device`` is unused).
    ``vllm``, ``sglang``, ``llama_cpp``: that server started on ``model`` (``options``:
    ``dtype``, ``server``, ``max_concurrency``, ``timeout_s``, ``max_retries``; see
    `served.ServedGenerator`: start and stop it with `served.running`).
    """
    if backend == "hf":
        from iterpref.llm.hf import HFGenerator

        return HFGenerator(model, device=device, **options)
    if backend == "openai":
        from iterpref.llm.openai_api import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    if backend in ENGINES:
        from iterpref.llm.served import ServedGenerator

        return ServedGenerator(model, engine=backend, **options)
    raise ValueError(f"unknown generation backend {backend!r}; expected one of {list(get_args(Backend))}")


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
