"""The LLM teacher: a model writes the code, reads the sandbox's error, and fixes it.

This is the paper's iterative debugging (section 2.1): one conversation per trajectory, the
problem first, then after every failing version the test error as the next user turn. Any
`iterpref.llm` backend serves: the same generation interface the evaluator uses.
"""

from __future__ import annotations

from dataclasses import replace

from iterpref import prompts
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.records import Attempt, Problem

FIX_REQUEST = (
    "The code failed the tests ({status}{error}):\n```\n{traceback}\n```\n"
    "Fix the code. Reply with the complete corrected solution in one python code block."
)


class LLMSession:
    """One conversation: the problem, then each failing version's error feedback."""

    def __init__(self, generator: Generator, sampling: SamplingConfig, problem: Problem):
        self.generator, self.sampling = generator, sampling
        self.messages = [{"role": "user", "content": prompts.user_message(problem.instruction, problem.signature)}]

    def _ask(self) -> tuple[str, str]:
        reply = self.generator.chat([self.messages], self.sampling)[0]
        self.messages.append({"role": "assistant", "content": reply})
        return prompts.extract_code(reply), f"{self.generator.name}: {len(reply)} characters"

    def write(self) -> tuple[str, str]:
        """The model's first solution."""
        return self._ask()

    def fix(self, history: list[Attempt]) -> tuple[str, str]:
        """Send the last version's test error back and take the model's fix."""
        outcome = history[-1].outcome
        error = f", {outcome.error_type}" if outcome.error_type else ""
        self.messages.append({"role": "user", "content": FIX_REQUEST.format(
            status=outcome.status, error=error, traceback=outcome.traceback.strip() or "(no output)")})
        return self._ask()


class LLMTeacher:
    """A teacher backed by any generation backend (sampling seeded per trajectory)."""

    def __init__(self, generator: Generator, sampling: SamplingConfig):
        self.generator, self.sampling = generator, sampling
        self.name = f"llm:{generator.name}"

    def open(self, problem: Problem, seed: int) -> LLMSession:
        """A fresh conversation for ``problem``."""
        return LLMSession(self.generator, replace(self.sampling, seed=seed), problem)
