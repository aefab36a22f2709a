"""The one prompt format, shared by pair building, training and evaluation.

The paper's prompt is the problem statement plus the function signature; completions start
with a python code fence. Training pairs and benchmark generation both go through
`user_message` / `completion`, so the student sees the same format in both.
"""

from __future__ import annotations

import re

FENCE_OPEN = "```python\n"
FENCE_CLOSE = "\n```"


def user_message(instruction: str, code_header: str) -> str:
    """The user turn: the task statement, then the code to complete inside a python fence
    (no fence when there is no code to start from, as in MBPP)."""
    if not code_header.strip():
        return f"{instruction.strip()}\n\nWrite a complete, self-contained Python solution."
    return (
        f"{instruction.strip()}\n\n"
        "Write a complete, self-contained Python solution. Start from this code:\n"
        f"{FENCE_OPEN}{code_header.rstrip()}{FENCE_CLOSE}"
    )


# EvalPlus's instruct prompt (evalplus 0.3.1 codegen + provider/utility.make_raw_chat_prompt), the
# one the Qwen2.5-Coder team reports HumanEval(+)/MBPP(+) with for instruct models: the task's own
# prompt in a bare fence, and the assistant turn pre-filled up to an opened python fence.
EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
                        "in a markdown code block:")
EVALPLUS_RESPONSE = ("Below is a Python script with a self-contained function that solves the problem "
                     "and passes corresponding tests:")
STYLES = ("iterpref", "evalplus")


def evalplus_conversation(task_prompt: str) -> list[dict[str, str]]:
    """The EvalPlus instruct chat for ``task_prompt``; its last (assistant) turn is a prefix for the
    model to continue, so the reply is the code itself, ended by the closing fence."""
    return [{"role": "user", "content": f"{EVALPLUS_INSTRUCTION}\n```\n{task_prompt.strip()}\n```\n"},
            {"role": "assistant", "content": f"{EVALPLUS_RESPONSE}\n{FENCE_OPEN}"}]


def completion(code: str) -> str:
    """The assistant turn for a solution: the code inside a python fence."""
    return f"{FENCE_OPEN}{code.rstrip()}{FENCE_CLOSE}"


def code_offset() -> int:
    """Offset of the code inside a `completion` string (spans are shifted by it)."""
    return len(FENCE_OPEN)


# any info string (```python3, ```py, ```Python...): a fence whose tag were not recognised would
# leave its closing ``` to open an empty "block" and the code would be lost
_FENCED = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in ``text``, in order (an unclosed last one too)."""
    return _FENCED.findall(text)


def extract_code(text: str) -> str:
    """The code of a model's answer: the longest fenced block, else the whole text."""
    blocks = code_blocks(text)
    if not blocks:
        return text.strip("\n")
    return max(blocks, key=len).rstrip()
