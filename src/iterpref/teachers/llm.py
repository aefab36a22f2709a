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
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.llm.openai_api import OpenAIRequestError
from iterpref.records import Attempt, Problem
from iterpref.teachers.base import TeacherError

FIX_REQUEST = (
    "The code failed the tests ({status}{error}):\n```\n{traceback}\n```\n"
    "Fix the code. Reply with the complete corrected solution in one python code block."
)
CONFIG_ERRORS = ("http_401", "http_403", "http_404")  # raised as they are: the stage stops
# Teacher settings left out of the response cache's generator identity: the sampling settings
# go into each request's key on their own, and the others never change a reply.
NOT_IN_CACHE_KEY = ("sampling", "cache_dir", "api_key_env", "max_concurrency", "timeout_s", "max_retries")


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
        tree = ast.parse(source)
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


def make_llm_teacher(cfg: dict) -> LLMTeacher:
    """The teacher a params ``teacher`` section with ``kind: llm`` describes (``kind`` removed).

    ``backend``, ``model``, ``device`` and the backend's options make the generator (see
    `iterpref.llm.make_generator`); ``sampling`` is a `SamplingConfig`; ``cache_dir`` (absent
    or None: no cache) caches replies on disk (`iterpref.llm.cache`), keyed by every setting
    not in `NOT_IN_CACHE_KEY`, ``materialize`` included (which model the ``model`` folder holds,
    when the teacher_model stage builds it).
    An in-process (``hf``) model batches the trajectories' turns together, behind the cache.
    """
    from iterpref.llm import make_generator

    sampling = SamplingConfig(**cfg.get("sampling", {}))
    options = {k: v for k, v in cfg.items()
               if k not in ("materialize", "backend", "model", "device", "sampling", "cache_dir")}
    generator = make_generator(cfg["backend"], cfg["model"], cfg.get("device", "auto"), **options)
    if cfg["backend"] == "hf":  # one in-process model: batch the trajectories' turns together
        from iterpref.llm.batching import BatchingGenerator

        generator = BatchingGenerator(generator, max_batch=sampling.batch_size)
    if cfg.get("cache_dir") is not None:
        from iterpref.llm.cache import CachedGenerator

        identity = {k: v for k, v in cfg.items() if k not in NOT_IN_CACHE_KEY}
        generator = CachedGenerator(generator, cfg["cache_dir"], identity)
    return LLMTeacher(generator, sampling)
