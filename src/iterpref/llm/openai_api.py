"""OpenAI-compatible chat-completions backend: GPT-4o, DeepSeek, or a local vLLM / SGLang /
llama.cpp server (``vllm serve MODEL`` serves http://localhost:8000/v1).

Each conversation is one ``POST /chat/completions`` request through the sync ``openai`` client;
a call with several conversations keeps several in flight in a thread pool, a call with one
sends it from the calling thread (callers that run their own threads, the debug workers and the
synthesizer, pay for no second thread). Requests go through the client's documented generic
``client.post`` rather than ``chat.completions.create``: the same endpoint, headers, retries and
errors, without the SDK's type-driven rewrite of the parameters (a no-op for plain text messages)
and its pydantic reply objects, about a third of the client's CPU per request on 2 cores
(bench/bench_problems.py). Retries are the client's own: 408, 409, 429, 5xx,
timeouts and connection errors are retried up to ``max_retries`` times with exponential backoff
(0.5 s doubling to at most 8 s, with jitter; a server's ``Retry-After`` / ``retry-after-ms``
header takes precedence). Other errors (400, 401, ...) fail at once, and so does a 200 answer
that is not a chat completion (a body that is not JSON, or no ``choices[0].message``). Either
way the request that finally fails raises `OpenAIRequestError`, naming the model, the server and
the cause, with ``cause`` a short name for counting: ``rate_limit`` (429), ``server_error``
(5xx), ``http_<status>`` (any other status), ``timeout``, ``connection``, ``malformed_reply``.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from tqdm import tqdm

from iterpref.cli import UserError
from iterpref.llm.base import Conversation, SamplingConfig, truncate_at_stop

MAX_STOP_STRINGS = 4  # the OpenAI API rejects more; the rest are applied locally
DUMMY_KEY = "EMPTY"  # what a local server without --api-key accepts (vLLM's convention)
# causes that are a configuration mistake (bad key, no access, wrong model or URL): the teachers and
# the synthesizer raise them as they are, and the stage stops
CONFIG_ERRORS = ("http_401", "http_403", "http_404")


@dataclass(frozen=True)
class ClientConfig:
    """How a client sends requests: `OpenAIGenerator`'s defaults (a generator section states its
    own, `iterpref.llm.GeneratorConfig`; conf/teacher/llm_openai.yaml states these, and a test
    holds the two equal). `iterpref.llm.served.SERVED_CLIENT` is a served backend's.

    Attributes:
        max_concurrency: requests in flight at once.
        timeout_s: seconds one request may take before it is retried.
        max_retries: retries per request of 408/409/429/5xx answers, timeouts and connection errors.
    """

    max_concurrency: int = 16
    timeout_s: float = 120
    max_retries: int = 5


class OpenAIRequestError(RuntimeError, UserError):
    """A chat-completions request that failed for good (after the client's retries, if any);
    ``cause`` names the kind of failure (see the module docstring)."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def _retryable(err: Exception) -> bool:
    """Whether the openai client retries this kind of failure (see `_base_client._should_retry`)."""
    import openai

    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    status = getattr(err, "status_code", None)
    return status is not None and (status in (408, 409, 429) or status >= 500)


def _cause(err: Exception) -> str:
    """The short name of a failure the openai client raised (see the module docstring)."""
    import openai

    if isinstance(err, openai.APITimeoutError):  # a subclass of APIConnectionError
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection"
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        return "rate_limit" if status == 429 else "server_error" if status >= 500 else f"http_{status}"
    return "malformed_reply"  # APIResponseValidationError: a 200 the client could not read


class OpenAIGenerator:
    """Generate with a model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        model: the model name the server knows (``gpt-4o``, ``deepseek-chat``, the path or
            name given to ``vllm serve``).
        base_url: the server's ``.../v1`` URL; None means the official OpenAI endpoint
            (or ``OPENAI_BASE_URL`` when set, as the openai client does).
        api_key_env: the environment variable holding the API key. It must be set for the
            official endpoint; with a ``base_url`` an unset key is sent as a dummy.
        max_concurrency: requests in flight at once, over all `chat` calls on this generator
            (debug workers share one generator). One call also keeps at most
            ``sampling.batch_size`` in flight.
        timeout_s: seconds one request may take before it is retried.
        max_retries: retries per request of 408/409/429/5xx answers, timeouts and connection
            errors, with exponential backoff (the openai client's).
            The three default to `ClientConfig`'s fields.
        max_stop_strings: stop strings sent with a request (the official API takes at most
            `MAX_STOP_STRINGS`); the rest are applied to the reply here, after the server has
            generated past them. None: send all (vLLM, SGLang and llama.cpp take any number).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = ClientConfig.max_concurrency, timeout_s: float = ClientConfig.timeout_s,
                 max_retries: int = ClientConfig.max_retries,
                 max_stop_strings: int | None = MAX_STOP_STRINGS):
        import openai

        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise ValueError(
                    f"{api_key_env} is not set: the OpenAI endpoint needs an API key "
                    f"(export {api_key_env}=..., or set base_url for a local server)")
            api_key = DUMMY_KEY
        self.name = f"openai:{model}"
        self.model, self.api_key_env = model, api_key_env
        self.max_concurrency, self.max_retries = max(1, max_concurrency), max_retries
        self.max_stop_strings = max_stop_strings
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                    max_retries=max_retries)
        self.base_url = str(self.client.base_url)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)

    def _request(self, messages: Conversation, sampling: SamplingConfig) -> str:
        """One reply; raises `OpenAIRequestError` once the client gives up."""
        import openai

        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "seed": sampling.seed, "n": 1}
        if sampling.stop:
            body["stop"] = list(sampling.stop[:self.max_stop_strings])
        if messages[-1]["role"] == "assistant":
            # Asks for the final turn's continuation (vLLM's and SGLang's chat API take these
            # two fields; the official OpenAI API does not prefill).
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        try:
            with self._slots:
                completion = self.client.post("/chat/completions", body=body, cast_to=object)
        except openai.APIError as err:
            if _retryable(err):
                why = f"gave up after {self.max_retries} retries"
            elif getattr(err, "status_code", None) == 401:
                why = f"not retried; check the key in {self.api_key_env}"
            else:
                why = "not retried"
            raise self._error(f"{type(err).__name__}: {err} ({why})", _cause(err)) from err
        except json.JSONDecodeError as err:  # a 200 whose body the client could not parse
            raise self._error(f"the reply is not JSON: {err} (not retried)", "malformed_reply") from err
        try:
            content = completion["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise self._error(f"the reply holds no choices[0].message: {str(completion)[:200]} (not retried)",
                              "malformed_reply") from err
        if content is not None and not isinstance(content, str):
            raise self._error(f"choices[0].message.content is not text: {str(content)[:200]} (not retried)",
                              "malformed_reply")
        content = content or ""
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        if prefill and content.startswith(prefill):
            # llama.cpp's server answers with the pre-filled text and its continuation, vLLM and
            # SGLang with the continuation only; one that begins by repeating the whole pre-filled
            # turn is not plausible, so the reply is what follows it.
            content = content[len(prefill):]
        return content

    def _error(self, what: str, cause: str) -> OpenAIRequestError:
        return OpenAIRequestError(f"{self.name} at {self.base_url}: {what}", cause)

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations`` (see `iterpref.llm.base.Generator`), in order.

        Stop strings go to the server (the first four) and are applied again locally, with
        ``stop_after_code``, to the reply text.
        """
        if not conversations:
            return []
        if len(conversations) == 1:
            return [self._reply(conversations[0], sampling)]
        workers = max(1, min(len(conversations), sampling.batch_size, self.max_concurrency))
        bar = tqdm(total=len(conversations), desc=progress, disable=progress is None)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai")
        try:
            futures = [pool.submit(self._reply, c, sampling) for c in conversations]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                bar.update(len(done))
                for fut in done:
                    fut.result()  # the first failure ends the call
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        return [f.result() for f in futures]

    def _reply(self, messages: Conversation, sampling: SamplingConfig) -> str:
        """One reply, cut at the stop strings (all of them, not only the four the server got)."""
        return truncate_at_stop(self._request(messages, sampling), sampling.stop, sampling.stop_after_code)
