"""transformers in-process backend: continuous batching on a preallocated KV cache.

`chat` renders every conversation with the chat template and decodes them all in one call of
`stream`, which keeps up to ``sampling.batch_size`` rows decoding at once: when a row finishes
(EOS, a stop string, a closed code block, ``max_new_tokens``), the next prompt is prefilled on
its own and its keys and values are written into the freed row of the running cache. Greedy
replies are token-for-token those of decoding each prompt alone (tests/test_hf_decode.py).

Prefill runs each prompt alone with ``logits_to_keep=1`` (no padding, one vocabulary row); every
layer's keys and values live in one buffer that a decode step writes one column of in place;
freed rows are refilled at once; and only a reply's last tokens are decoded to see whether it
can have stopped (docs: benchmarks, "The in-process decoder on CPU", says what each costs).

Prompts also share their beginnings: every chat prompt starts with the same system turn and
instruction (55 of the 161 tokens of an average HumanEval prompt for Qwen2.5-Coder), a debugging
conversation's next turn starts with its previous prompt, and independent samples of one problem
repeat a prompt whole. A prompt's keys and values depend only on the tokens before them, so a
prefill starts from those of the longest prefix it shares with a recent prompt (`_Prefixes`).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import replace

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
# Prompt lookup: at most this many draft tokens a step, drafted from the row's own prompt and
# reply by an n-gram of this length. A step that checks drafts costs more than a plain one (every
# row computes the step's full width), so with all rows busy it need not pay (bench_generation
# measures it).
MAX_DRAFT = 16
LOOKUP_NGRAM = 3
# Keys and values of recent prompts kept for reuse, in tokens: 8192 are 100 MB for the 0.5B in
# bfloat16 (12 KB a token), 235 MB for the 1.5B, 377 MB for SmolLM2-135M in float32.
PREFIX_TOKENS = 8192


def _probabilities(logits, sampling: SamplingConfig):
    """The temperature / top-p distribution over the vocabulary (last dimension)."""
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > sampling.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs /= probs.sum(dim=-1, keepdim=True)
    return probs


def _next_tokens(logits, sampling: SamplingConfig, generators: list) -> list[int]:
    """Each row's greedy argmax, or its temperature / top-p sample drawn with its own generator."""
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1).tolist()
    probs = _probabilities(logits, sampling)
    return [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, generators)]


class _PackedLinear(torch.nn.Module):
    """A bfloat16 `torch.nn.Linear` for CPU decoding, its weight reordered once into oneDNN's
    blocked layout. A plain bf16 weight is reordered inside every call, which a decode step of a
    few rows pays for in full; the outputs are equal bit for bit (the same kernel runs, only the
    reorder moves)."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 16):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def can_pack() -> bool:
    """Whether oneDNN runs bfloat16 kernels on this CPU (torch's own check: an AVX-512 CPU or newer)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pack_linears(model) -> int:
    """Replace every `torch.nn.Linear` of a bfloat16 CPU ``model`` by a `_PackedLinear` (for
    generation only: the packed weights are no longer parameters); how many were replaced."""
    found = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if isinstance(child, torch.nn.Linear)]
    for parent, name, child in found:
        setattr(parent, name, _PackedLinear(child))
    return len(found)


def _decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention of the few new tokens of a decode step (one, or a prompt-lookup draft) as two
    matmuls and a float32 softmax, for bfloat16 on CPU, where torch's flash-attention kernel
    (sdpa) is slower for a few query tokens. Prompts (prefill: no mask, many tokens) go to sdpa.
    The scores are rounded to bfloat16 as in transformers' eager attention."""
    if attention_mask is None or query.shape[2] > MAX_DRAFT + 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    rows, heads, new, dim = query.shape
    groups = heads // key.shape[1]
    query = query.reshape(rows, key.shape[1], groups * new, dim)  # query heads by key head
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
    mask = attention_mask.repeat(1, 1, groups, 1)  # [rows, 1, groups * new, columns], True = attend
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.view(rows, heads, new, dim).transpose(1, 2), None


AttentionInterface.register("iterpref_decode", _decode_attention)
AttentionMaskInterface.register("iterpref_decode", sdpa_mask)


class _Layer(DynamicLayer):
    """One layer's part of a `_BatchCache`: a step writes its columns from ``hi`` in place and
    attends to the layer's whole buffer (contiguous, which `_decode_attention`'s matmuls need to
    run at full speed; the mask hides padding, rejected drafts and free columns)."""

    def __init__(self, cache: _BatchCache, index: int):
        super().__init__()
        self.cache, self.index, self.is_initialized = cache, index, True

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = self.cache.kv[self.index]
        hi, new = self.cache.hi, key_states.shape[2]  # the step's tokens per row
        keys[:, :, hi:hi + new] = key_states
        values[:, :, hi:hi + new] = value_states
        return keys, values

    def get_seq_length(self) -> int:
        return self.cache.mask.shape[1] - 1  # so that the model's masks span the whole buffer


class _BatchCache(Cache):
    """Keys and values of the rows being decoded, written in place.

    ``kv`` is [layers, 2 (keys, values), rows, kv_heads, columns, head_dim]. All rows' newest
    tokens end before column ``hi``; row r's tokens lie in columns [start[r], hi), where the
    mask marks them. The columns before them (padding), drafts the model rejected (holes) and
    the columns from ``hi`` on (free) are masked out and hold finite numbers. When the free
    columns run out, every `ROOM` columns, `_rebuild` copies each row's real columns into the
    spare buffer, packed to its right, which drops padding, holes and finished rows' columns.
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

    def _rebuild(self, rows: list[int | None] | None = None, left: int = 0) -> None:
        """Copy the real columns of ``rows`` (default all; None: a new free row) into the spare
        buffer, with at least ``left`` columns before ``hi`` and `ROOM` free columns after it."""
        rows = list(range(len(self.start))) if rows is None else rows
        live = [r is not None and self.start[r] is not None for r in rows]
        real = self.mask[:, :self.hi].sum(-1).tolist()  # one read from the device, not one a row
        counts = [real[r] if ok else 0 for r, ok in zip(rows, live)]
        span = max(counts, default=0)
        hi = max(left, span)  # the new hi: padding columns on the left where needed
        shape = torch.Size((*self.kv.shape[:2], len(rows), self.kv.shape[3], hi + ROOM, self.kv.shape[5]))
        if self.buffers[1].numel() < shape.numel():  # rarely: grow the spare buffer by a quarter
            self.buffers[1] = self.kv.new_empty(shape.numel() * 5 // 4)
        new = self.buffers[1][:shape.numel()].view(shape)
        new[..., hi:, :] = 0
        mask = self.mask.new_zeros((len(rows), shape[4]))
        for i, (r, n) in enumerate(zip(rows, counts)):
            new[:, :, i, :, :hi - n] = 0
            if n == 0:
                continue
            lo = self.start[r]
            if n == self.hi - lo:  # no holes: one slice
                new[:, :, i, :, hi - n:hi] = self.kv[:, :, r, :, lo:self.hi]
            else:
                real = self.mask[r, lo:self.hi].nonzero().squeeze(1) + lo
                new[:, :, i, :, hi - n:hi] = self.kv[:, :, r].index_select(3, real)
            mask[i, hi - n:hi] = True
        self.buffers.reverse()
        self.kv, self.mask = new, mask
        self.start = [hi - n if ok else None for ok, n in zip(live, counts)]
        self.hi = hi

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

    def grow(self) -> int:
        """Add a free row (a prompt arrived after the batch shrank); its index."""
        self._rebuild(list(range(len(self.start))) + [None])
        return len(self.start) - 1

    def step_inputs(self, width: int):
        """Open columns [hi, hi + width) for ``width`` new tokens per row (the last token and
        its drafts): their attention mask ([rows, 1, width, columns], causal among the new
        tokens) and positions (real tokens before each)."""
        if self.hi + width > self.mask.shape[1]:
            self._rebuild()
        hi = self.hi
        self.mask[:, hi:hi + width] = True
        positions = self.mask[:, :hi].sum(-1, keepdim=True) + torch.arange(width, device=self.mask.device)
        mask = self.mask[:, None, None, :].repeat(1, 1, width, 1)
        for j in range(width - 1):
            mask[:, :, j, hi + j + 1:hi + width] = False
        return mask, positions

    def commit(self, kept: list[int], width: int) -> None:
        """After a step of ``width`` tokens per row: row r keeps its last token and its first
        ``kept[r]`` drafts; the rejected drafts' columns become holes."""
        for row, k in enumerate(kept):
            self.mask[row, self.hi + 1 + k:self.hi + width] = False
        self.hi += width


class _Lookup:
    """Prompt lookup decoding's drafts for one row: the tokens that followed the latest earlier
    occurrence of the row's last `LOOKUP_NGRAM` tokens in its prompt and reply so far (code
    replies copy much of their prompt: the signature, the docstring, the code under repair)."""

    def __init__(self, ids: list[int]):
        self.ids: list[int] = []
        self.seen: dict[tuple[int, ...], int] = {}  # n-gram -> end of its latest occurrence before the last
        self.extend(ids)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            if len(self.ids) >= LOOKUP_NGRAM:
                self.seen[tuple(self.ids[-LOOKUP_NGRAM:])] = len(self.ids)
            self.ids.append(token)

    def draft(self, k: int) -> list[int]:
        end = self.seen.get(tuple(self.ids[-LOOKUP_NGRAM:]))
        return [] if end is None or k <= 0 else self.ids[end:end + k]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class _Prefixes:
    """The prefill caches of the latest prompts (at most `PREFIX_TOKENS` tokens together), to
    start a new prompt's prefill from the longest prefix it shares with one of them."""

    def __init__(self):
        self.caches: OrderedDict[tuple[int, ...], DynamicCache] = OrderedDict()
        self.tokens = 0

    def load(self, prompt: list[int], cache: DynamicCache) -> int:
        """Fill the empty ``cache`` with the keys and values of ``prompt``'s longest stored
        prefix, short of its last token (whose logits the prefill must compute); its length."""
        best, n = None, 0
        for ids in self.caches:
            m = _common_prefix(ids, prompt)
            if m > n:
                best, n = ids, m
        n = min(n, len(prompt) - 1)
        if n <= 0:
            return 0
        self.caches.move_to_end(best)
        for i, layer in enumerate(self.caches[best].layers):
            cache.update(layer.keys[:, :, :n], layer.values[:, :, :n], i)
        return n

    def save(self, prompt: list[int], cache: DynamicCache) -> None:
        """Keep a prompt's prefill cache (it is only read from now on); drop the oldest beyond
        the budget."""
        key = tuple(prompt)
        if key in self.caches or len(key) > PREFIX_TOKENS:
            return
        self.caches[key] = cache
        self.tokens += len(key)
        while self.tokens > PREFIX_TOKENS:
            self.tokens -= len(self.caches.popitem(last=False)[0])


def _accept(logits, drafts: list[list[int]], sampling: SamplingConfig, generators: list) -> list[list[int]]:
    """Each row's new tokens from a step's logits ([rows, width, vocab]): the drafts the model
    agrees with, then its own next token. Greedy: drafts equal to the argmax. Sampling: the
    speculative-sampling rule for a draft that is one token for sure (accept it with its
    probability, else sample from the rest), so the replies follow the model's distribution;
    each row draws with its own generator."""
    if not any(drafts):
        return [[t] for t in _next_tokens(logits[:, 0], sampling, generators)]
    if sampling.temperature <= 0:
        best = logits.argmax(-1).tolist()
        out = []
        for draft, pred in zip(drafts, best):
            m = 0
            while m < len(draft) and draft[m] == pred[m]:
                m += 1
            out.append(draft[:m] + [pred[m]])
        return out
    out = []
    for draft, row, generator in zip(drafts, logits, generators):
        probs = _probabilities(row[:len(draft) + 1], sampling)
        tokens = []
        for j, t in enumerate(draft):
            if torch.rand((), generator=generator, device=probs.device) < probs[j, t]:
                tokens.append(t)
                continue
            rest = probs[j].clone()
            rest[t] = 0
            if rest.sum() <= 0:  # t was all the mass (rounding made the draw miss it)
                tokens.append(t)
                continue
            tokens.append(int(torch.multinomial(rest, 1, generator=generator)))
            break
        else:
            tokens.append(int(torch.multinomial(probs[len(draft)], 1, generator=generator)))
        out.append(tokens)
    return out


class HFGenerator:
    """Generate with a local Hugging Face causal LM (CPU or one GPU).

    Args:
        model_path: folder or hub id of the model.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        dtype: torch dtype name; ``auto`` uses bfloat16 on GPU and float32 on CPU.
        prompt_lookup: draft tokens a decode step may check (prompt lookup decoding, at most
            `MAX_DRAFT`); 0: one token a step. Greedy replies are the model's own either way
            (up to floating-point rounding: a step over several tokens sums in another order).
        pack_weights: reorder the linear layers' weights once for oneDNN (`pack_linears`): the
            same outputs bit for bit, faster on CPU in bfloat16; None: there, where the CPU has
            oneDNN's bfloat16 kernels (`can_pack`).

    The model's weights must not change while it generates: prompts' keys and values are kept
    for reuse (`_Prefixes`).
    """

    def __init__(self, model_path: str | os.PathLike, device: str = "auto", dtype: str = "auto",
                 prompt_lookup: int = 0, pack_weights: bool | None = None):
        if not 0 <= prompt_lookup <= MAX_DRAFT:
            raise ValueError(f"prompt_lookup: {prompt_lookup} draft tokens; expected 0 to {MAX_DRAFT}")
        self.prompt_lookup = prompt_lookup
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
        if pack_weights is None:
            pack_weights = device == "cpu" and dtype == "bfloat16" and can_pack()
        if pack_weights:
            pack_linears(self.model)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.prefixes = _Prefixes()

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
        """A prompt alone through the model, from the longest prefix it shares with a recent
        prompt: its one-row cache and first new token (``rng``: its random generator)."""
        cache = DynamicCache(config=self.model.config)
        reused = self.prefixes.load(prompt, cache)
        ids = torch.tensor([prompt[reused:]], device=self.device)
        logits = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        self.prefixes.save(prompt, cache)
        return cache, _next_tokens(logits, sampling, [rng])[0]

    def _drafts(self, owner: list[Hashable], lookups: dict[Hashable, _Lookup], replies: dict[Hashable, list[int]],
                sampling: SamplingConfig) -> list[list[int]]:
        """Each row's prompt-lookup draft for this step (none when `prompt_lookup` is 0, or when
        under a quarter of the rows have one: a wider step for a few rows costs more than it saves)."""
        if not self.prompt_lookup:
            return [[] for _ in owner]
        drafts = [lookups[i].draft(min(self.prompt_lookup, sampling.max_new_tokens - len(replies[i]) - 1))
                  for i in owner]
        return drafts if 4 * sum(map(bool, drafts)) >= len(drafts) else [[] for _ in owner]

    def stream(self, prompts: list[list[int]], sampling: SamplingConfig) -> Iterator[tuple[int, list[int]]]:
        """Decode prompt token ids (no padding) with continuous batching; yield ``(index, new
        token ids)`` for each prompt as it finishes. Prompts are admitted in order."""
        queue = deque((i, p, sampling.seed + i) for i, p in enumerate(prompts))
        rows = min(max(sampling.batch_size, 1), max(len(prompts), 1))
        yield from self.serve(lambda idle: queue.popleft() if queue else None, replace(sampling, batch_size=rows))

    def serve(self, take: Callable[[bool], tuple[Hashable, list[int], int] | None],
              sampling: SamplingConfig) -> Iterator[tuple[Hashable, list[int]]]:
        """Decode prompts as they come, up to ``sampling.batch_size`` at once; yield ``(key, new
        token ids)`` for each as it finishes. ``take(idle)`` gives the next ``(key, prompt ids,
        seed)``, or None when there is none now; ``idle`` says no row is decoding (it may wait
        for one). The run ends when ``take(True)`` returns None. A sampled reply draws from a
        random generator of its own, seeded with its seed: it does not depend on which prompts
        decode beside it or came before it (in bfloat16, up to the rounding that changes: the
        batch's company, and how much of the prompt was prefilled from a stored prefix)."""
        most = max(sampling.batch_size, 1)
        cache = _BatchCache(self.model, most)
        owner: list[Hashable | None] = [None] * most  # the prompt decoding in each row
        replies: dict[Hashable, list[int]] = {}
        lookups: dict[Hashable, _Lookup] = {}
        rngs: dict[Hashable, torch.Generator] = {}
        with torch.inference_mode():
            while True:
                while None in owner or len(owner) < most:  # admit prompts while a row is free
                    item = take(all(i is None for i in owner))
                    if item is None:
                        break
                    key, prompt, seed = item
                    rngs[key] = torch.Generator(device=self.device).manual_seed(seed)
                    prefill, first = self._prefill(prompt, sampling, rngs[key])
                    replies[key] = [first]
                    if self._finished(replies[key], sampling):
                        yield key, replies.pop(key)
                        del rngs[key]
                        continue
                    if None not in owner:
                        owner.append(None)
                        cache.grow()
                    row = owner.index(None)
                    cache.put(row, prefill)
                    owner[row] = key
                    if self.prompt_lookup:
                        lookups[key] = _Lookup(prompt + [first])
                if None in owner:  # nothing to admit now: shrink the batch
                    rows = [r for r, i in enumerate(owner) if i is not None]
                    if not rows:
                        return
                    cache.keep(rows)
                    owner = [owner[r] for r in rows]
                drafts = self._drafts(owner, lookups, replies, sampling)
                width = 1 + max(map(len, drafts))
                mask, positions = cache.step_inputs(width)
                feed = torch.tensor([[replies[i][-1], *d] + [replies[i][-1]] * (width - 1 - len(d))
                                     for i, d in zip(owner, drafts)], device=self.device)
                logits = self.model(input_ids=feed, attention_mask=mask, position_ids=positions,
                                    cache=cache, use_cache=True).logits
                new = _accept(logits, drafts, sampling, [rngs[i] for i in owner])
                cache.commit([len(tokens) - 1 for tokens in new], width)
                for row, (i, tokens) in enumerate(zip(owner, new)):
                    finished = False
                    for token in tokens:
                        replies[i].append(token)
                        if finished := self._finished(replies[i], sampling):
                            break
                    if finished:
                        yield i, replies.pop(i)
                        lookups.pop(i, None)
                        del rngs[i]
                        owner[row] = None
                        cache.free(row)
                    elif self.prompt_lookup:
                        lookups[i].extend(tokens)

    def decode(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        """New token ids for each prompt (token ids, no padding), in order."""
        out: list[list[int]] = [[] for _ in prompts]
        for i, ids in self.stream(prompts, sampling):
            out[i] = ids
        return out

    def encode(self, conversation: Conversation) -> list[int]:
        """A conversation's prompt token ids, through the chat template. One that ends with an
        assistant turn is a prefix to continue (EvalPlus's prompt)."""
        prefix = conversation[-1]["role"] == "assistant"
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=not prefix,
                                                  continue_final_message=prefix)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply(self, ids: list[int], sampling: SamplingConfig) -> str:
        """The text of new token ids, cut at the stop rule."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return truncate_at_stop(text, sampling.stop, sampling.stop_after_code)

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations`` (see `iterpref.llm.base.Generator`)."""
        # Longest prompts first: a later, shorter prompt then always fits left of the cache's
        # newest column, so the cache only grows to the right.
        order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
        prompts = [self.encode(conversations[i]) for i in order]
        replies: list[str] = [""] * len(conversations)
        with tqdm(total=len(conversations), desc=progress, disable=progress is None) as bar:
            for k, ids in self.stream(prompts, sampling):
                replies[order[k]] = self.reply(ids, sampling)
                bar.update(1)
        return replies
