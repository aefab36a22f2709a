"""transformers in-process generation (`HFGenerator`): continuous batching on a preallocated KV
cache (`generator`), with the parts it is built from each in its own module: `sampling` (the next
token), `packed` (bf16 linears packed for oneDNN), `attention` (the decode step's attention),
`kv_cache` (the running batch's keys and values), `drafts` (prompt lookup decoding) and
`prefixes` (reuse of recent prompts' keys and values)."""

from iterpref.llm.hf.generator import HFGenerator
from iterpref.llm.hf.packed import can_pack, pack_linears

__all__ = ["HFGenerator", "can_pack", "pack_linears"]
