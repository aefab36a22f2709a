"""transformers in-process backend: continuous batching on a preallocated KV cache.

`chat` renders every conversation with the chat template and decodes them all in one call of
`stream`, which keeps up to ``sampling.batch_size`` rows decoding at once: when a row finishes
(EOS, a stop string, a closed code block, ``max_new_tokens``), the next prompt is prefilled on
its own and its keys and values are written into the freed row of the running cache. Greedy
replies are token-for-token those of decoding each prompt alone (tests/test_hf_decode.py). In
bfloat16 on CPU (packed weights, the ``iterpref_decode`` attention) they are so bit for bit:
every row's numbers are the same whatever the batch size, the prompts beside it, the stored
prefixes, the drafts and the thread count (`packed`, `attention`, `kv_cache`;
tests/test_batch_invariance.py). In float32 and on a GPU, torch's own kernels run, and a reply
may change with its batch by rounding.

Prefill runs each prompt alone with ``logits_to_keep=1`` (no padding, one vocabulary row); every
layer's keys and values live in one buffer that a decode step writes a column of per row in place;
freed rows are refilled at once; and only a reply's last tokens are decoded to see whether it
can have stopped (docs: benchmarks, "The in-process decoder on CPU", says what each costs).

Prompts also share their beginnings: every chat prompt starts with the same system turn and
instruction (55 of the 161 tokens of an average HumanEval prompt for Qwen2.5-Coder), a debugging
conversation's next turn starts with its previous prompt, and independent samples of one problem
repeat a prompt whole. A prompt's keys and values depend only on the tokens before them, so a
prefill starts from those of the longest prefix it shares with a recent prompt (`Prefixes`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import replace

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from iterpref.llm.base import Conversation, SamplingConfig, stop_position, truncate_at_stop
from iterpref.llm.hf import attention  # noqa: F401  (registers the iterpref_decode attention)
from iterpref.llm.hf.drafts import MAX_DRAFT, Lookup, accept
from iterpref.llm.hf.kv_cache import BatchCache
from iterpref.llm.hf.packed import PREFILL_ROWS, block_rows, can_pack, pack_linears
from iterpref.llm.hf.prefixes import Prefixes
from iterpref.llm.hf.sampling import next_tokens

# A reply can only have stopped at this step if the text of its last tokens holds the last
# character of a stop string or a backtick (see `HFGenerator._finished`). A UTF-8 character is
# at most 4 bytes, so the text the newest token changed lies within its last 4 tokens; 8 is slack.
TAIL_TOKENS = 8


class HFGenerator:
    """Generate with a local Hugging Face causal LM (CPU or one GPU).

    Args:
        model_path: folder or hub id of the model.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        dtype: torch dtype name; ``auto`` uses bfloat16 on GPU and float32 on CPU.
        prompt_lookup: draft tokens a decode step may check (prompt lookup decoding, at most
            `MAX_DRAFT`); 0: one token a step. Greedy replies are the model's own either way
            (bit for bit in bfloat16 on CPU; elsewhere up to floating-point rounding: a step
            over several tokens sums in another order).
        pack_weights: reorder the linear layers' weights once for oneDNN, computed in blocks of
            rows that make a row's output independent of its batch (`pack_linears`), faster on
            CPU in bfloat16; None: there, where the CPU has oneDNN's bfloat16 kernels (`can_pack`).

    The model's weights must not change while it generates: prompts' keys and values are kept
    for reuse (`Prefixes`).
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
        self.prefixes = Prefixes()

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
        with block_rows(PREFILL_ROWS):
            logits = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        self.prefixes.save(prompt, cache)
        return cache, next_tokens(logits, sampling, [rng])[0]

    def _drafts(self, owner: list[Hashable], lookups: dict[Hashable, Lookup], replies: dict[Hashable, list[int]],
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
        decode beside it or came before it (where torch's own kernels run, float32 or a GPU, up
        to the rounding that the batch's company changes)."""
        most = max(sampling.batch_size, 1)
        cache = BatchCache(self.model, most)
        owner: list[Hashable | None] = [None] * most  # the prompt decoding in each row
        replies: dict[Hashable, list[int]] = {}
        lookups: dict[Hashable, Lookup] = {}
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
                        lookups[key] = Lookup(prompt + [first])
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
                                    cache=cache, use_cache=True, decode_step=True).logits
                new = accept(logits, drafts, sampling, [rngs[i] for i in owner])
                cache.commit([len(tokens) - 1 for tokens in new])
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
        # Longest prompts first: the cache reaches its width early and a later, shorter prompt
        # fits the columns it has.
        order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
        prompts = [self.encode(conversations[i]) for i in order]
        replies: list[str] = [""] * len(conversations)
        with tqdm(total=len(conversations), desc=progress, disable=progress is None) as bar:
            for k, ids in self.stream(prompts, sampling):
                replies[order[k]] = self.reply(ids, sampling)
                bar.update(1)
        return replies
