"""transformers in-process backend: batched, left-padded generation with the chat template."""

from __future__ import annotations

import os

from tqdm import tqdm

from iterpref.llm.base import CLOSED_CODE_BLOCK, Conversation, SamplingConfig, truncate_at_stop


def _code_block_closed(tokenizer, prompt_len: int):
    """A stopping criterion: a row is done once its reply holds a closed code block."""
    import torch
    from transformers import StoppingCriteria

    class CodeBlockClosed(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(CLOSED_CODE_BLOCK.search(t)) for t in texts], device=input_ids.device)

    return CodeBlockClosed()


class HFGenerator:
    """Generate with a local Hugging Face causal LM (CPU or one GPU).

    Args:
        model_path: folder or hub id of the model.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        dtype: torch dtype name; ``auto`` uses bfloat16 on GPU and float32 on CPU.
    """

    def __init__(self, model_path: str | os.PathLike, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

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

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations`` (see `iterpref.llm.base.Generator`)."""
        import torch

        # Longest prompts first: batches of similar length waste less padding.
        order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
        replies: list[str] = [""] * len(conversations)
        bar = tqdm(total=len(conversations), desc=progress, disable=progress is None)
        gen_kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=sampling.temperature > 0,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if sampling.temperature > 0:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
            torch.manual_seed(sampling.seed)
        if sampling.stop:
            gen_kwargs.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        for start in range(0, len(order), sampling.batch_size):
            idx = order[start:start + sampling.batch_size]
            texts = [
                self.tokenizer.apply_chat_template(conversations[i], tokenize=False, add_generation_prompt=True)
                for i in idx
            ]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = batch.to(self.device)
            prompt_len = batch["input_ids"].shape[1]
            extra = {}
            if sampling.stop_after_code:
                extra["stopping_criteria"] = [_code_block_closed(self.tokenizer, prompt_len)]
            with torch.inference_mode():
                out = self.model.generate(**batch, **gen_kwargs, **extra)
            new_tokens = out[:, prompt_len:]
            for i, ids in zip(idx, new_tokens):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                replies[i] = truncate_at_stop(text, sampling.stop, sampling.stop_after_code)
            bar.update(len(idx))
        bar.close()
        return replies
