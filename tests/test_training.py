"""Tests of iterpref.training: the focal (Target-DPO) masks and loss, on real TRL steps.

Everything runs TRL 1.16's own DPOTrainer code (dataset preparation, collator, loss, training
loop) on a 1M-parameter random Llama; nothing is mocked. Expected values are computed
independently here: token masks from the decoded pieces of TRL's own token ids, log-probs from
a plain forward of unpatched copies of the policy and the reference.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import DPOConfig

from iterpref import prompts
from iterpref.pairs import diff
from iterpref.records import Pair, write_jsonl
from iterpref.training import recipe, schedule
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig, dpo_config, pairs_dataset
from iterpref.training.trainer import FocalDPOTrainer

END_OF_TURN = "<|im_end|>\n"  # ChatML, both tokenizers



# --------------------------------------------------------------------------- pairs

PROMPT = prompts.user_message("Fix the function so the tests pass.", "def f(x):")

# name: (rejected code, chosen code)
CASES = {
    # one middle line differs
    "one_line": (
        "def inc_all(xs):\n    out = []\n    for x in xs:\n        out.append(x - 1)\n    return out\n",
        "def inc_all(xs):\n    out = []\n    for x in xs:\n        out.append(x + 1)\n    return out\n",
    ),
    # two separate middle lines differ: two spans
    "two_lines": (
        "def total(xs):\n    s = 1\n    for x in xs:\n        s -= x\n    return s\n",
        "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
    ),
    # the changed line follows a line ending in "):": BPE merges the newline with the indentation
    "after_colon": (
        "def f(x):\n    return x - 1\n\n\ndef g(y):\n    return y * 2\n",
        "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n",
    ),
    # the changed line ends in "):" and the next line is unchanged
    "colon_line": (
        "def f(x, y=0):\n    return x + 1\n",
        "def f(x):\n    return x + 1\n",
    ),
    # the fix only inserts a line: D- is empty
    "insert_only": (
        "def f(x):\n    y = x\n    return y\n",
        "def f(x):\n    y = x\n    y += 1\n    return y\n",
    ),
}


def make_pair(name: str) -> Pair:
    """A pair built exactly as iterpref.pairs.build does: spans of the rstripped code, shifted into the completion."""
    rej_code, cho_code = (c.rstrip() for c in CASES[name])
    rej_spans, cho_spans = diff.changed_spans(rej_code, cho_code)
    off = prompts.code_offset()
    return Pair(
        pair_id=name,
        task_id=f"t/{name}",
        prompt=PROMPT,
        chosen=prompts.completion(cho_code),
        rejected=prompts.completion(rej_code),
        rejected_spans=diff.shift_spans(rej_spans, off),
        chosen_spans=diff.shift_spans(cho_spans, off),
        chosen_round=1,
        rejected_round=0,
    )


ALL = [make_pair(n) for n in CASES]
BY_ID = {p.pair_id: p for p in ALL}


def test_cases_are_what_they_claim():
    for p in ALL:
        lines = diff.span_lines(p.rejected, p.rejected_spans)
        assert all(not ln.startswith("```") for ln in lines)
    one = BY_ID["one_line"]
    assert [ln.strip() for ln in diff.span_lines(one.rejected, one.rejected_spans)] == ["out.append(x - 1)"]
    assert len(BY_ID["two_lines"].rejected_spans) == 2
    assert BY_ID["insert_only"].rejected_spans == [] and BY_ID["insert_only"].chosen_spans


# --------------------------------------------------------------------------- helpers

def load_tiny(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def small_llama(vocab_size: int) -> LlamaForCausalLM:
    """A throwaway random model for a foreign tokenizer (SmolLM2's 49k vocabulary)."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    ))


def build_trainer(model, tok, pairs, out_dir, mode="line", args_overrides=None, **cfg_kw) -> FocalDPOTrainer:
    cfg = TrainConfig(mask=MaskConfig(mode=mode), bf16=False, **cfg_kw)
    args = dpo_config(cfg, out_dir, "test", [], use_cpu=True)
    for k, v in (args_overrides or {}).items():
        setattr(args, k, v)
    return FocalDPOTrainer(model=model, args=args, train_dataset=pairs_dataset(pairs),
                           processing_class=tok, mask=cfg.mask)


def token_pieces(tok, messages, completion_ids):
    """Each completion token's text and its [start, end) relative to the last message's content.

    Independent of masks.py: positions come from decoding TRL's ids one by one, not from the
    tokenizer's offset mapping.
    """
    text = tok.apply_chat_template(messages, tokenize=False)
    pieces = [tok.decode([i], clean_up_tokenization_spaces=False) for i in completion_ids]
    suffix = "".join(pieces)
    content = messages[-1]["content"]
    assert text.endswith(suffix), "TRL's completion ids do not decode to the end of the rendered chat"
    assert suffix.endswith(content + END_OF_TURN)
    pos = len(text) - len(suffix) - text.rindex(content)
    ranges = []
    for p in pieces:
        ranges.append((pos, pos + len(p)))
        pos += len(p)
    return pieces, ranges


def expected_mask(ranges, spans):
    """The documented rule: a token is in when its characters overlap a span."""
    return [int(any(s < b and a < e for a, b in spans)) for s, e in ranges]


def row_by_id(dataset, pair_id):
    rows = [r for r in dataset if r["pair_id"] == pair_id]
    assert len(rows) == 1
    return rows[0]


# --------------------------------------------------------------------------- 1. masks

def check_masks(trainer, tok, mode):
    ds = trainer.train_dataset
    assert len(ds) == len(ALL)
    for p in ALL:
        row = row_by_id(ds, p.pair_id)
        prompt = [{"role": "user", "content": p.prompt}]
        # TRL's own ids, one mask entry each
        assert len(row["rejected_token_mask"]) == len(row["rejected_ids"])
        assert len(row["chosen_token_mask"]) == len(row["chosen_ids"])
        rej_pieces, rej_ranges = token_pieces(tok, prompt + [{"role": "assistant", "content": p.rejected}], row["rejected_ids"])
        cho_pieces, cho_ranges = token_pieces(tok, prompt + [{"role": "assistant", "content": p.chosen}], row["chosen_ids"])
        rej_mask, cho_mask = row["rejected_token_mask"], row["chosen_token_mask"]

        if mode == "none":
            assert rej_mask == [1] * len(rej_mask) and cho_mask == [1] * len(cho_mask)
            continue
        assert rej_mask == expected_mask(rej_ranges, p.rejected_spans), (p.pair_id, list(zip(rej_pieces, rej_mask)))
        if mode == "line":
            assert cho_mask == [1] * len(cho_mask)
        else:  # symmetric: chosen narrowed to D+
            assert cho_mask == expected_mask(cho_ranges, p.chosen_spans), (p.pair_id, list(zip(cho_pieces, cho_mask)))
            assert 0 < sum(cho_mask) < len(cho_mask)

        # Read back as text: the masked tokens cover each D- line and nothing beyond the
        # tokens that straddle its boundaries.
        for s, e in p.rejected_spans:
            idx = [i for i, (a, b) in enumerate(rej_ranges) if a < e and s < b]
            assert all(rej_mask[i] for i in idx)
            covered = "".join(rej_pieces[i] for i in idx)
            assert p.rejected[s:e] in covered
            assert rej_ranges[idx[0]][0] <= s and rej_ranges[idx[-1]][1] >= e
        masked_total = sum(rej_mask)
        if not p.rejected_spans:
            assert masked_total == 0
        else:
            assert 0 < masked_total < len(rej_mask)
            # no unmasked token touches a D- line, and no masked token lies fully outside one
            for (a, b), m in zip(rej_ranges, rej_mask):
                touches = any(a < e and s < b for s, e in p.rejected_spans)
                assert bool(m) == touches
    return ds


def straddler(ranges, line_start):
    """Index of the token holding both the previous line's newline and the line's first character, if any."""
    for i, (a, b) in enumerate(ranges):
        if a <= line_start - 1 and b > line_start:
            return i
    return None


def check_straddling(trainer, tok, require_straddler):
    """The boundary rule of masks.py on the two "):" cases."""
    ds = trainer.train_dataset
    found = 0
    for name in ("after_colon", "colon_line"):
        p = BY_ID[name]
        row = row_by_id(ds, name)
        msgs = [{"role": "user", "content": p.prompt}, {"role": "assistant", "content": p.rejected}]
        pieces, ranges = token_pieces(tok, msgs, row["rejected_ids"])
        mask = row["rejected_token_mask"]
        (s, e), = p.rejected_spans
        if name == "after_colon":  # D- line starts right after "def f(x):\n"
            i = straddler(ranges, s)
            if i is not None:
                found += 1
                assert "\n" in pieces[i] and mask[i] == 1, (pieces[i], mask[i])
            # the tokens of "def f(x):" that do not reach into the D- line are out
            assert all(m == 0 for (a, b), m in zip(ranges, mask) if b <= s)
        else:  # D- line "def f(x, y=0):\n" is followed by an unchanged line
            i = straddler(ranges, e)
            if i is not None:
                found += 1
                assert mask[i] == 1, pieces[i]
            assert all(m == 0 for (a, b), m in zip(ranges, mask) if a >= e)
    if require_straddler:
        assert found == 2, "expected the tokenizer to merge a newline with the next line's indentation"


@pytest.mark.parametrize("mode", ["none", "line", "symmetric"])
def test_masks_tiny_tokenizer(tiny_model_dir, tmp_path, mode):
    model, tok = load_tiny(tiny_model_dir)
    trainer = build_trainer(model, tok, ALL, tmp_path, mode=mode)
    check_masks(trainer, tok, mode)
    if mode == "line":
        check_straddling(trainer, tok, require_straddler=True)


@pytest.mark.parametrize("mode", ["none", "line", "symmetric"])
def test_masks_smollm2_tokenizer(smollm2_tokenizer, tmp_path, mode):
    tok = smollm2_tokenizer
    trainer = build_trainer(small_llama(len(tok)), tok, ALL, tmp_path, mode=mode)
    check_masks(trainer, tok, mode)
    if mode == "line":
        check_straddling(trainer, tok, require_straddler=True)


# --------------------------------------------------------------------------- 2. insert-only

@pytest.mark.parametrize("precompute", [True, False])
def test_insert_only_rejected_sum_is_zero(tiny_model_dir, tmp_path, precompute):
    pair = BY_ID["insert_only"]
    common = dict(precompute_ref_log_probs=precompute, max_steps=1, per_device_batch_size=1,
                  learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0)
    if precompute:  # plain DPO first on the same data and model: the ref cache must not leak into the focal run
        model, tok = load_tiny(tiny_model_dir)
        plain = build_trainer(model, tok, [pair], tmp_path / "none", mode="none", **common)
        assert plain.train_dataset[0]["ref_rejected_logps"] < 0
    model, tok = load_tiny(tiny_model_dir)
    trainer = build_trainer(model, tok, [pair], tmp_path / "line", mode="line", **common)
    assert trainer.train_dataset[0]["rejected_token_mask"] == [0] * len(trainer.train_dataset[0]["rejected_ids"])
    if precompute:
        assert trainer.train_dataset[0]["ref_rejected_logps"] == 0.0
        assert trainer.train_dataset[0]["ref_chosen_logps"] < 0
    trainer.train()  # one real optimizer step
    (logged,) = [h for h in trainer.state.log_history if "loss" in h]
    assert logged["logps/rejected"] == 0.0
    assert logged["rewards/rejected"] == 0.0  # beta * (policy 0 - reference 0)
    assert logged["logps/chosen"] < 0
    assert torch.isfinite(torch.tensor(logged["loss"]))


# --------------------------------------------------------------------------- 3. loss = paper formula

def completion_logps(model, prompt_ids, completion_ids):
    """log p(token | prefix) of each completion token, from a plain unpadded forward."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    lp = logits.log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
    return lp[len(prompt_ids) - 1:]


def paper_loss(policy, ref, rows, beta, rpo_alpha=None, focal=True):
    """Target-DPO (eq. 6) / Target-RPO (eq. 8), by hand. Also returns the policy sums."""
    losses, chosen_tokens, pol_c_sums, pol_r_sums = [], [], [], []
    for row in rows:
        pc = completion_logps(policy, row["prompt_ids"], row["chosen_ids"])
        rc = completion_logps(ref, row["prompt_ids"], row["chosen_ids"])
        pr = completion_logps(policy, row["prompt_ids"], row["rejected_ids"])
        rr = completion_logps(ref, row["prompt_ids"], row["rejected_ids"])
        m = torch.tensor(row["rejected_token_mask"], dtype=torch.float32) if focal else torch.ones_like(pr)
        k_plus = (pc - rc).sum()  # every chosen completion token
        k_minus = (m * (pr - rr)).sum()  # rejected tokens of D- lines only
        losses.append(-F.logsigmoid(beta * (k_plus - k_minus)))
        chosen_tokens.append(pc)
        pol_c_sums.append(pc.sum())
        pol_r_sums.append((m * pr).sum())
    loss = torch.stack(losses).mean()
    if rpo_alpha is not None:
        loss = loss + rpo_alpha * (-torch.cat(chosen_tokens).mean())
    return loss, torch.stack(pol_c_sums).mean(), torch.stack(pol_r_sums).mean()


@pytest.mark.parametrize("precompute", [True, False])
@pytest.mark.parametrize("loss", ["dpo", "rpo"])
def test_loss_is_the_paper_formula(tiny_model_dir, tmp_path, precompute, loss):
    model, tok = load_tiny(tiny_model_dir)
    trainer = build_trainer(model, tok, ALL, tmp_path, mode="line", loss=loss, beta=0.1, rpo_alpha=1.0,
                            precompute_ref_log_probs=precompute, per_device_batch_size=len(ALL))
    # Move the policy away from the reference (precomputed, or TRL's own reference copy).
    torch.manual_seed(0)
    with torch.no_grad():
        for prm in trainer.model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    policy.load_state_dict(trainer.model.state_dict())
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # frozen starting model
    policy.eval(), ref.eval()

    batch = next(iter(trainer.get_train_dataloader()))  # TRL's column removal + our collator
    expected_keys = {"input_ids", "attention_mask", "completion_mask"} | (
        {"ref_chosen_logps", "ref_rejected_logps"} if precompute else set())
    assert set(batch) == expected_keys
    assert batch["input_ids"].shape[0] == 2 * len(ALL)

    trainer.model.train()
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
    rows = list(trainer.train_dataset)
    want, pol_c, pol_r = paper_loss(policy, ref, rows, beta=0.1, rpo_alpha=1.0 if loss == "rpo" else None)
    assert abs(got.item() - want.item()) < 1e-4, (got.item(), want.item())
    metrics = trainer._metrics["train"]
    assert abs(metrics["logps/chosen"][-1] - pol_c.item()) < 1e-3
    assert abs(metrics["logps/rejected"][-1] - pol_r.item()) < 1e-3
    # and the mask matters: plain DPO over every rejected token gives a different loss
    plain, _, _ = paper_loss(policy, ref, rows, beta=0.1, rpo_alpha=1.0 if loss == "rpo" else None, focal=False)
    assert abs(plain.item() - want.item()) > 1e-3


# --------------------------------------------------------------------------- 4. truncation

@pytest.mark.parametrize("truncation_mode", ["keep_start", "keep_end"])
def test_truncation_keeps_mask_aligned(tiny_model_dir, tmp_path, truncation_mode):
    model, tok = load_tiny(tiny_model_dir)
    pairs = [BY_ID["one_line"], BY_ID["two_lines"]]
    probe = build_trainer(*load_tiny(tiny_model_dir), pairs, tmp_path / "probe", mode="line")
    row0 = row_by_id(probe.train_dataset, "one_line")
    first_masked = row0["rejected_token_mask"].index(1)
    if truncation_mode == "keep_start":  # cut in the middle of the D- line
        max_length = len(row0["prompt_ids"]) + first_masked + 3
    else:  # keep the end: cut into the prompt
        max_length = len(row0["rejected_ids"]) + 5
    trainer = build_trainer(model, tok, pairs, tmp_path / "t", mode="line", max_length=max_length,
                            per_device_batch_size=2, args_overrides={"truncation_mode": truncation_mode})
    rows = [row_by_id(trainer.train_dataset, p.pair_id) for p in pairs]
    batch = trainer.data_collator(rows)
    n = len(rows)
    assert batch["completion_mask"].shape == batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] <= max_length
    cut = False
    for k, row in enumerate(rows):
        full = row["prompt_ids"] + row["rejected_ids"]
        keep = range(len(full))[:max_length] if truncation_mode == "keep_start" else range(len(full))[-max_length:]
        cut |= len(keep) < len(full)
        # the surviving masked tokens, found from the uncut example
        want = [full[j] for j in keep
                if j >= len(row["prompt_ids"]) and row["rejected_token_mask"][j - len(row["prompt_ids"])]]
        r = batch["completion_mask"][n + k].bool()
        assert batch["input_ids"][n + k][r].tolist() == want
        # chosen rows: TRL's own completion mask, untouched (mode line)
        c = batch["completion_mask"][k].bool()
        keep_c = range(len(row["prompt_ids"]) + len(row["chosen_ids"]))
        keep_c = keep_c[:max_length] if truncation_mode == "keep_start" else keep_c[-max_length:]
        assert int(c.sum()) == sum(1 for j in keep_c if j >= len(row["prompt_ids"]))
    assert cut
    if truncation_mode == "keep_start":  # the D- line of one_line is cut half way
        kept = int(batch["completion_mask"][n].sum())
        assert 0 < kept < sum(rows[0]["rejected_token_mask"])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- 5. recipe.train

def test_recipe_train_saves_model_and_metrics(tiny_model_dir, tmp_path):
    pairs_path = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_path, [BY_ID[n] for n in ("one_line", "two_lines", "after_colon", "colon_line")])
    last = {}
    for mode in ("none", "line"):
        cfg = TrainConfig(loss="dpo", mask=MaskConfig(mode=mode), max_steps=2, per_device_batch_size=2,
                          learning_rate=1e-4, bf16=False, seed=0)
        out = tmp_path / mode
        metrics = recipe.train(cfg, tiny_model_dir, pairs_path, out, run_name=f"test-{mode}",
                               cache_root=tmp_path / "cache", report_to=[], use_cpu=True)
        on_disk = json.loads((out / "train_metrics.json").read_text())
        assert on_disk["steps"] == metrics["steps"] == 2
        assert on_disk["pairs"] == 4 and on_disk["config"]["mask"]["mode"] == mode
        reloaded = AutoModelForCausalLM.from_pretrained(out)
        AutoTokenizer.from_pretrained(out)
        start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        assert any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), start.state_dict().values()))
        last[mode] = metrics["log_history"][-1]
    assert not any((tmp_path / "cache").iterdir())  # the work folder goes when training ends
    assert last["none"]["logps/rejected"] < 0 and last["line"]["logps/rejected"] < 0
    assert abs(last["line"]["logps/rejected"]) < abs(last["none"]["logps/rejected"])


# --------------------------------------------------------------------------- 6. guard

@pytest.mark.parametrize("bad", [{"ld_alpha": 0.5}, {"loss_type": "ipo"}, {"loss_type": "sigmoid_norm"},
                                 {"use_weighting": True}])
def test_focal_mask_refuses_length_normalising_options(tiny_model_dir, tmp_path, bad):
    model, tok = load_tiny(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, report_to=[], **bad)
    with pytest.raises(ValueError, match="focal masks"):
        FocalDPOTrainer(model=model, args=args, train_dataset=pairs_dataset(ALL[:1]),
                        processing_class=tok, mask=MaskConfig(mode="line"))
    # plain DPO (mode none) may use them
    if "ld_alpha" in bad:
        FocalDPOTrainer(model=model, args=args, train_dataset=pairs_dataset(ALL[:1]),
                        processing_class=tok, mask=MaskConfig(mode="none"))


# --------------------------------------------------------------------------- 7. a run that trains

def test_a_one_step_run_changes_the_weights(tiny_model_dir, tmp_path):
    """2 pairs in a batch of 4: one optimizer step, the warmup's first, at a learning rate above 0."""
    pairs_path = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_path, [BY_ID["one_line"], BY_ID["two_lines"]])
    cfg = TrainConfig(loss="dpo", mask=MaskConfig(mode="line"), per_device_batch_size=4, learning_rate=1e-3,
                      warmup_ratio=0.03, bf16=False)
    metrics = recipe.train(cfg, tiny_model_dir, pairs_path, tmp_path / "out", run_name="one-step",
                           cache_root=tmp_path / "cache", report_to=[], use_cpu=True)
    assert metrics["steps"] == 1
    assert metrics["log_history"][0]["learning_rate"] == pytest.approx(1e-3)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values()))


def test_the_trainer_steps_the_planned_learning_rates(tiny_model_dir, tmp_path):
    """Warmup of ceil(0.5 * 3) = 2 steps: 1/2 then the full peak, never 0; then the cosine."""
    pairs_path = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_path, ALL[:3])
    cfg = TrainConfig(loss="dpo", mask=MaskConfig(mode="none"), max_steps=3, per_device_batch_size=1,
                      learning_rate=1e-4, warmup_ratio=0.5, bf16=False)
    metrics = recipe.train(cfg, tiny_model_dir, pairs_path, tmp_path / "out", run_name="plan",
                           cache_root=tmp_path / "cache", report_to=[], use_cpu=True)
    logged = [h["learning_rate"] for h in metrics["log_history"]]
    assert logged == pytest.approx(schedule.learning_rates(1e-4, "cosine", 0.5, 3))
    assert logged[0] == pytest.approx(5e-5) and min(logged) > 0


@pytest.mark.parametrize("experiment", ["embedded", "qwen_coder", "smoke"])
def test_every_step_of_a_preset_has_a_learning_rate(experiment):
    """Whatever number of training pairs the preset's data gives (1 up to its max_pairs)."""
    from iterpref import params as P

    common = P.compose([f"experiment={experiment}"])["train"]["common"]
    for n in range(1, (common["max_pairs"] or 200) + 1):
        steps = schedule.total_steps(n, common["per_device_batch_size"], common["gradient_accumulation_steps"], 1,
                                     common["epochs"], common["max_steps"])
        rates = schedule.learning_rates(common["learning_rate"], common["lr_scheduler"], common["warmup_ratio"], steps)
        assert len(rates) == steps >= 1 and min(rates) > 0, (n, rates)


def test_a_run_that_cannot_train_is_refused_before_the_model_loads(tiny_model_dir, tmp_path):
    from iterpref.cli import UserError

    pairs_path = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_path, ALL[:2])
    cfg = TrainConfig(max_length=8, bf16=False)
    with pytest.raises(UserError, match="every one of the 2 pairs has a prompt of train.common.max_length=8"):
        recipe.train(cfg, tiny_model_dir, pairs_path, tmp_path / "out",
                     run_name="x", cache_root=tmp_path / "cache", report_to=[], use_cpu=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    write_jsonl(pairs_path, [])
    with pytest.raises(UserError, match="no pairs to train on"):
        recipe.train(TrainConfig(bf16=False), tiny_model_dir, pairs_path, tmp_path / "out", run_name="x",
                     cache_root=tmp_path / "cache", report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="max_steps = 0 trains nothing"):
        TrainConfig(max_steps=0)
