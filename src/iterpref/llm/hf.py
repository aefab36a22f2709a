"""transformers in-process backend: continuous batching on a preallocated KV cache.

`chat` renders every conversation with the chat template and decodes them all in one call of
`stream`, which keeps up to ``sampling.batch_size`` rows decoding at once: when a row finishes
(EOS, a stop string, a closed code block, ``max_new_tokens``), the next prompt is prefilled on
its own and its keys and values are written into the freed row of the running cache. Greedy
replies are token-for-token those of decoding each prompt alone (tests/test_hf_decode.py).

Where the time went before (SmolLM2-135M fp32, 2 CPU cores, the 32 longest HumanEval prompts,
greedy, at most 320 new tokens; static batches of 32 that drop finished rows):
- prefill: about 40% of the batch. The prompts were left-padded to the longest (14.8k token slots
  for 9.7k real tokens), and the model computed 49k-vocabulary logits for every prompt position
  (a fifth of the prefill FLOPs and a 2 GB logits tensor) to keep only the last one.
- decode: `DynamicCache` appends each step with `torch.cat`, which copies the whole cache: 30
  layers x keys and values of [rows, 3, ~500, 64] floats, 45% of a decode step's time.
- runaway rows (15 of these 32 replies never close their code block and run to 320 tokens)
  kept the batch at half its width for most of its steps while the other prompts waited.
- the stop check (decode the whole reply, search it) was 0.4% of the time.
So: prefill each prompt alone with ``logits_to_keep=1`` (no padding, one vocabulary row), keep
every layer's keys and values in one buffer that a step writes one column of in place, refill
freed rows at once, and decode only a reply's last tokens to see whether it can have stopped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator

import torch
from tqdm import tqdm
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from iterpref.llm.base import Conversation, SamplingConfig, stop_position, truncate_at_stop

# Free columns after the newest one. Every step attends to them (masked) and to the columns of
# finished rows until `_BatchCache._rebuild` copies the live columns, every ROOM steps. On 32
# rows x 500 columns in fp32 (0.7 GB) the copy takes about 0.15 s: with 32 the copies and the
# wasted attention (16 columns on average) each cost about 1% of the decode time.
ROOM = 32
# A reply can only have stopped at this step if the text of its last tokens holds the last
# character of a stop string or a backtick (see `HFGenerator._finished`). A UTF-8 character is
# at most 4 bytes, so the text the newest token changed lies within its last 4 tokens; 8 is slack.
TAIL_TOKENS = 8


def _next_tokens(logits, sampling: SamplingConfig, generator):
    """Greedy argmax, or a temperature / top-p sample."""
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > sampling.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention of one new token per row as two matmuls and a float32 softmax, for bfloat16
    on CPU, where torch's flash-attention kernel (sdpa) takes 2.5x as long (32 rows x 500
    columns: 1.9 vs 0.75 ms a layer, 40% of a decode step). Prompts (several tokens) go to sdpa.
    The scores are rounded to bfloat16 as in transformers' eager attention."""
    if query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    rows, heads, _, dim = query.shape
    query = query.view(rows, key.shape[1], heads // key.shape[1], dim)  # query heads by key head
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
    if attention_mask is not None:  # [rows, 1, 1, columns], True = attend
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.reshape(rows, 1, heads, dim), None


AttentionInterface.register("iterpref_decode", _decode_attention)
AttentionMaskInterface.register("iterpref_decode", sdpa_mask)


class _Layer(DynamicLayer):
    """One layer's part of a `_BatchCache`: a step writes its column ``hi`` in place and attends
    to the layer's whole buffer (contiguous, which `_decode_attention`'s matmuls need to run at
    full speed; the mask hides padding and free columns)."""

    def __init__(self, cache: _BatchCache, index: int):
        super().__init__()
        self.cache, self.index, self.is_initialized = cache, index, True

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = self.cache.kv[self.index]
        keys[:, :, self.cache.hi:self.cache.hi + 1] = key_states  # one new token per row
        values[:, :, self.cache.hi:self.cache.hi + 1] = value_states
        return keys, values

    def get_seq_length(self) -> int:
        return self.cache.mask.shape[1] - 1  # so that the model's masks span the whole buffer


class _BatchCache(Cache):
    """Keys and values of the rows being decoded, written in place.

    ``kv`` is [layers, 2 (keys, values), rows, kv_heads, columns, head_dim]. All rows' newest
    tokens end at column ``hi``; row r's tokens fill columns [start[r], hi), and the columns
    before them (padding) and after ``hi`` (free) are masked out and hold finite numbers. When
    the free columns run out, every `ROOM` steps, `_rebuild` copies the live columns into the
    spare buffer and drops the columns left of every row's start (those of finished rows).
    Two buffers, reused: a fresh 0.7 GB tensor (32 rows of SmolLM2 in fp32) costs 0.6 s in
    page faults on this CPU, six times the copy.
    """

    def __init__(self, model, rows: int):
        config = model.config.get_text_config(decoder=True)
        kinds, _ = get_layer_types_and_kwargs(config)
        if any(k != "full_attention" for k in kinds):
            raise NotImplementedError(f"HFGenerator decodes full-attention models only, not {set(kinds)}")
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.kv = torch.zeros((len(kinds), 2, rows, config.num_key_value_heads, 0, head_dim),
                              dtype=model.dtype, device=model.device)
        self.buffers = [self.kv.new_empty(0), self.kv.new_empty(0)]  # flat storage: kv's, spare
        self.mask = torch.zeros((rows, 0), dtype=torch.bool, device=model.device)  # real (not padding) columns
        self.start: list[int | None] = [None] * rows  # None: a free row
        self.hi = 0
        super().__init__(layers=[_Layer(self, i) for i in range(len(kinds))])

    def _rebuild(self, rows: list[int] | None = None, left: int = 0) -> None:
        """Copy the live columns of ``rows`` (default all) into the spare buffer, with at least
        ``left`` columns before ``hi`` and `ROOM` free columns after it."""
        rows = list(range(len(self.start))) if rows is None else rows
        lo = min((self.start[r] for r in rows if self.start[r] is not None), default=self.hi)
        span = self.hi - lo
        shift = max(left - span, 0)  # new padding columns on the left
        shape = torch.Size((*self.kv.shape[:2], len(rows), self.kv.shape[3], shift + span + ROOM, self.kv.shape[5]))
        if self.buffers[1].numel() < shape.numel():  # rarely: grow the spare buffer by a quarter
            self.buffers[1] = self.kv.new_empty(shape.numel() * 5 // 4)
        new = self.buffers[1][:shape.numel()].view(shape)
        new[..., :shift, :] = 0
        new[..., shift + span:, :] = 0
        mask = self.mask.new_zeros((len(rows), shape[4]))
        for i, r in enumerate(rows):
            new[:, :, i, :, shift:shift + span] = self.kv[:, :, r, :, lo:self.hi]
            mask[i, shift:shift + span] = self.mask[r, lo:self.hi]
        self.buffers.reverse()
        self.kv, self.mask = new, mask
        self.start = [None if self.start[r] is None else self.start[r] - lo + shift for r in rows]
        self.hi = shift + span

    def put(self, row: int, prefill: DynamicCache) -> None:
        """Write a prompt's keys and values (a one-row cache) into free ``row``, ending at ``hi``."""
        n = prefill.get_seq_length()
        if n > self.hi:
            self._rebuild(left=n)
        for (keys, values), layer in zip(self.kv, prefill.layers):
            keys[row, :, self.hi - n:self.hi] = layer.keys[0]
            values[row, :, self.hi - n:self.hi] = layer.values[0]
        self.mask[row] = False
        self.mask[row, self.hi - n:self.hi] = True
        self.start[row] = self.hi - n

    def free(self, row: int) -> None:
        self.start[row] = None

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order): drop free rows once no prompt is left to admit."""
        self._rebuild(rows)

    def step_inputs(self):
        """Open column ``hi`` for one new token per row; its attention mask and positions."""
        if self.hi == self.mask.shape[1]:
            self._rebuild()
        self.mask[:, self.hi] = True
        return self.mask, self.mask.sum(-1, keepdim=True) - 1  # position: real tokens before it

    def advance(self) -> None:
        self.hi += 1


class HFGenerator:
    """Generate with a local Hugging Face causal LM (CPU or one GPU).

    Args:
        model_path: folder or hub id of the model.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        dtype: torch dtype name; ``auto`` uses bfloat16 on GPU and float32 on CPU.
    """

    def __init__(self, model_path: str | os.PathLike, device: str = "auto", dtype: str = "auto"):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        self.name = f"hf:{model_path}"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        if device == "cpu" and dtype == "bfloat16" and self.model.config._attn_implementation == "sdpa":
            self.model.set_attn_implementation("iterpref_decode")
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}

    def _finished(self, ids: list[int], sampling: SamplingConfig) -> bool:
        """Whether a reply that was not finished one token ago is finished now.

        A stop string or closed code block that appears now ends in the text the newest token
        changed, so the reply's last tokens hold its last character (a backtick for a code
        block). Only then is the whole reply decoded and `stop_position` asked: exact, and on
        SmolLM2's HumanEval replies needed at 1 step in 50.
        """
        if ids[-1] in self.eos_ids or len(ids) >= sampling.max_new_tokens:
            return True
        ends = [s[-1:] for s in sampling.stop] + (["`"] if sampling.stop_after_code else [])
        if not ends:
            return False
        tail = self.tokenizer.decode(ids[-TAIL_TOKENS:], skip_special_tokens=True)
        if not any(e in tail for e in ends):  # ("" is in any tail: an empty stop string)
            return False
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return stop_position(text, sampling.stop, sampling.stop_after_code) is not None

    def _prefill(self, prompt: list[int], sampling: SamplingConfig, rng):
        """A prompt alone through the model: its one-row cache and first new token."""
        cache = DynamicCache(config=self.model.config)
        ids = torch.tensor([prompt], device=self.device)
        logits = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return cache, int(_next_tokens(logits, sampling, rng)[0])

    def stream(self, prompts: list[list[int]], sampling: SamplingConfig) -> Iterator[tuple[int, list[int]]]:
        """Decode prompt token ids (no padding) with continuous batching; yield ``(index, new
        token ids)`` for each prompt as it finishes. Prompts are admitted in order."""
        if not prompts:
            return
        rng = torch.Generator(device=self.device).manual_seed(sampling.seed)
        queue = deque(range(len(prompts)))
        cache = _BatchCache(self.model, min(max(sampling.batch_size, 1), len(prompts)))
        owner: list[int | None] = [None] * len(cache.start)  # prompt index decoding in each row
        replies: dict[int, list[int]] = {}
        with torch.inference_mode():
            while True:
                for row in range(len(owner)):  # fill free rows with the next prompts
                    while owner[row] is None and queue:
                        i = queue.popleft()
                        prefill, first = self._prefill(prompts[i], sampling, rng)
                        replies[i] = [first]
                        if self._finished(replies[i], sampling):
                            yield i, replies.pop(i)
                        else:
                            cache.put(row, prefill)
                            owner[row] = i
                if None in owner:  # nothing left to admit: shrink the batch
                    rows = [r for r, i in enumerate(owner) if i is not None]
                    if not rows:
                        return
                    cache.keep(rows)
                    owner = [owner[r] for r in rows]
                mask, positions = cache.step_inputs()
                feed = torch.tensor([[replies[i][-1]] for i in owner], device=self.device)
                logits = self.model(input_ids=feed, attention_mask=mask, position_ids=positions,
                                    cache=cache, use_cache=True).logits[:, -1]
                cache.advance()
                for row, (i, token) in enumerate(zip(owner, _next_tokens(logits, sampling, rng).tolist())):
                    replies[i].append(token)
                    if self._finished(replies[i], sampling):
                        yield i, replies.pop(i)
                        owner[row] = None
                        cache.free(row)

    def decode(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        """New token ids for each prompt (token ids, no padding), in order."""
        out: list[list[int]] = [[] for _ in prompts]
        for i, ids in self.stream(prompts, sampling):
            out[i] = ids
        return out

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations`` (see `iterpref.llm.base.Generator`)."""
        # Longest prompts first: a later, shorter prompt then always fits left of the cache's
        # newest column, so the cache only grows to the right.
        order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
        # A conversation that ends with an assistant turn is a prefix to continue (EvalPlus's prompt).
        texts = [
            self.tokenizer.apply_chat_template(conversations[i], tokenize=False,
                                               add_generation_prompt=conversations[i][-1]["role"] != "assistant",
                                               continue_final_message=conversations[i][-1]["role"] == "assistant")
            for i in order
        ]
        prompts = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        replies: list[str] = [""] * len(conversations)
        with tqdm(total=len(conversations), desc=progress, disable=progress is None) as bar:
            for k, ids in self.stream(prompts, sampling):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                replies[order[k]] = truncate_at_stop(text, sampling.stop, sampling.stop_after_code)
                bar.update(1)
        return replies
