"""The LLM teacher: a model writes the code, reads the sandbox's error, and fixes it.

This is the paper's iterative debugging (section 2.1): one conversation per trajectory, the
problem first, then after every failing version the test error as the next user turn. Any
`iterpref.llm` backend serves: the same generation interface the evaluator uses.

Teacher faults. Every version of a trajectory must be code the teacher offered, or a pair
could train on something that is not a solution. So a turn that yields no code raises
`TeacherError` (the loop ends the trajectory there, unsolved, and records the fault) instead
of becoming a version:
- a request that failed for good, after the client's retries (429, 5xx, other statuses, a
  timeout, a dropped connection, a body that is not a chat completion), with the backend's
  cause; except 401, 403 and 404, which say the configuration is wrong (key, permissions,
  model name): every request would get them, so they stop the run instead;
- ``empty_reply``: the reply is empty or blank;
- ``no_code``: the reply has no code: neither a fenced block (an empty one counts as none)
  nor, unfenced, Python source that defines a function or class (so prose is not a version,
  while bare code is; a fenced block is a version even when it does not parse).
"""

from __future__ import annotations

import ast
from dataclasses import replace

from iterpref import prompts
from iterpref.debugging.teachers.base import TeacherError
from iterpref.debugging.teachers.operators import parse
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.llm.openai_api import CONFIG_ERRORS, OpenAIRequestError
from iterpref.records import Attempt, Outcome, Problem

FIX_REQUEST = (
    "The code failed the tests ({status}{error}):\n```\n{traceback}\n```\n"
    "Fix the code. Reply with the complete corrected solution in one python code block."
)


def fix_request(outcome: Outcome) -> str:
    """The user turn that sends a failing version's test error back to the teacher."""
    error = f", {outcome.error_type}" if outcome.error_type else ""
    return FIX_REQUEST.format(status=outcome.status, error=error, traceback=outcome.traceback.strip() or "(no output)")


def code_of(reply: str) -> str:
    """The version a reply offers (see the module docstring); raises `TeacherError` when none."""
    if not reply.strip():
        raise TeacherError("empty_reply", "the reply is empty")
    code = prompts.extract_code(reply)
    if not code.strip() or ("```" not in reply and not _defines_something(code)):
        raise TeacherError("no_code", f"no python code in the reply: {reply[:300]!r}")
    return code


def _defines_something(source: str) -> bool:
    """Whether ``source`` parses and defines a function or class at its top level."""
    try:
        tree = parse(source)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)


class LLMSession:
    """One conversation: the problem, then each failing version's error feedback."""

    def __init__(self, generator: Generator, sampling: SamplingConfig, problem: Problem):
        self.generator, self.sampling = generator, sampling
        self.messages = [{"role": "user", "content": prompts.user_message(problem.instruction, problem.signature)}]

    def _ask(self) -> tuple[str, str]:
        try:
            reply = self.generator.chat([self.messages], self.sampling)[0]
        except OpenAIRequestError as err:
            if err.cause in CONFIG_ERRORS:
                raise
            raise TeacherError(err.cause, str(err)) from err
        self.messages.append({"role": "assistant", "content": reply})
        return code_of(reply), f"{self.generator.name}: {len(reply)} characters"

    def write(self) -> tuple[str, str]:
        """The model's first solution."""
        return self._ask()

    def fix(self, history: list[Attempt]) -> tuple[str, str]:
        """Send the last version's test error back and take the model's fix."""
        self.messages.append({"role": "user", "content": fix_request(history[-1].outcome)})
        return self._ask()


class LLMTeacher:
    """A teacher backed by any generation backend (sampling seeded per trajectory)."""

    def __init__(self, generator: Generator, sampling: SamplingConfig):
        self.generator, self.sampling = generator, sampling
        self.name = f"llm:{generator.name}"

    def open(self, problem: Problem, seed: int) -> LLMSession:
        """A fresh conversation for ``problem``."""
        return LLMSession(self.generator, replace(self.sampling, seed=seed), problem)


def make_llm_teacher(cfg: dict) -> LLMTeacher:
    """The teacher a params ``teacher`` section with ``kind: llm`` describes (``kind`` removed):
    its generator, batched and cached as `iterpref.llm.from_config` builds it."""
    from iterpref.llm import from_config

    return LLMTeacher(*from_config(cfg))
