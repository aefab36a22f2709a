"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (`chat_server`),
answering either with a deterministic echo (protocol tests) or with the tiny HF model (a small
"vLLM-like" server).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest
from chat_server import echo, hermetic_env, hf_responder, last_user, server, serving, user  # noqa: F401 (fixtures)

from iterpref import debugging
from iterpref.debugging.teachers import make_teacher
from iterpref.llm import make_generator
from iterpref.llm.base import SamplingConfig
from iterpref.llm.openai_api import ClientConfig, OpenAIGenerator, OpenAIRequestError
from iterpref.problems import load_seed
from iterpref.sandbox import SandboxConfig


@pytest.fixture(scope="module")
def tiny_hf(tiny_model_dir):
    from iterpref.llm.hf import HFGenerator

    return HFGenerator(tiny_model_dir, device="cpu")


@pytest.fixture
def hf_server(tiny_hf):
    """A "vLLM-like" server: the tiny model answers, with the request's sampling."""
    with serving(hf_responder(tiny_hf)) as s:
        yield s


def test_replies_in_order_through_concurrent_requests(server):
    def slow_echo(body):  # later conversations answer sooner: completion order is scrambled
        time.sleep(0.01 * (10 - int(last_user(body).split()[-1])))
        return echo(body)

    server.respond, server.hold = slow_echo, 3
    gen = make_generator("openai", "echo-model", base_url=server.url, max_concurrency=3)
    assert isinstance(gen, OpenAIGenerator) and gen.name == "openai:echo-model"
    convs = [user(f"problem {i}") for i in range(8)]
    replies = gen.chat(convs, SamplingConfig(batch_size=8), progress="chat")
    assert replies == [f"reply to: problem {i}" for i in range(8)]
    assert sorted(last_user(r.body) for r in server.requests) == sorted(f"problem {i}" for i in range(8))
    assert server.max_in_flight == 3  # concurrent, and never more than max_concurrency


def test_max_concurrency_bounds_all_calls_together(server):
    def slow_echo(body):  # long enough that unbounded calls would overlap 4 deep
        time.sleep(0.05)
        return echo(body)

    server.respond, server.hold = slow_echo, 2
    gen = OpenAIGenerator("echo-model", base_url=server.url, max_concurrency=2)
    out: dict[int, list[str]] = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, gen.chat(
        [user(f"t{k} c{i}") for i in range(4)], SamplingConfig(batch_size=4)))) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert out == {k: [f"reply to: t{k} c{i}" for i in range(4)] for k in range(2)}
    assert server.max_in_flight == 2


def test_client_settings_left_out_are_client_configs(server):
    """The client's defaults are stated once, in ClientConfig's fields (conf/teacher/llm_openai.yaml
    is held equal to them in test_config_schema)."""
    gen = OpenAIGenerator("m", base_url=server.url)
    default = ClientConfig()
    assert (gen.max_concurrency, gen.client.timeout, gen.client.max_retries) == (
        default.max_concurrency, default.timeout_s, default.max_retries)
    assert gen._slots._value == default.max_concurrency  # the bound on requests in flight


def test_request_carries_the_sampling_config(server, monkeypatch):
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    gen = OpenAIGenerator("some/model", base_url=server.url, api_key_env="LOCAL_KEY")
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    sampling = SamplingConfig(max_new_tokens=77, temperature=0.3, top_p=0.9, seed=1234, stop=["\nEND", "###"])
    assert gen.chat([conv], sampling) == ["reply to: hi"]
    (seen,) = server.requests
    assert seen.body["model"] == "some/model" and seen.body["messages"] == conv
    sent = {k: seen.body[k] for k in ("temperature", "top_p", "max_tokens", "seed")}
    assert sent == {"temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "seed": 1234}
    assert seen.body["stop"] == ["\nEND", "###"]
    assert seen.headers["authorization"] == "Bearer sk-local"
    assert "continue_final_message" not in seen.body


def test_a_prefilled_assistant_turn_asks_the_server_to_continue_it(server):
    """EvalPlus-style prompts end with an assistant prefix: vLLM/SGLang continue it when told."""
    gen = OpenAIGenerator("m", base_url=server.url)
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Here:\n```python\n"}]
    gen.chat([conv], SamplingConfig(max_new_tokens=5))
    (seen,) = server.requests
    assert seen.body["messages"] == conv
    assert seen.body["continue_final_message"] is True and seen.body["add_generation_prompt"] is False


@pytest.mark.parametrize("echoes", [False, True])
def test_the_reply_is_the_continuation_whether_or_not_the_server_echoes_the_prefill(server, echoes):
    """vLLM and SGLang answer a pre-filled turn with its continuation; llama.cpp's server with
    the pre-filled text and then the continuation. Either way the reply is the continuation."""
    prefill, continuation = "Here:\n```python\n", "def f():\n    return 1\n```"
    server.respond = lambda body: (prefill if echoes else "") + continuation
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": prefill}]
    assert OpenAIGenerator("m", base_url=server.url).chat([conv], SamplingConfig()) == ["def f():\n    return 1\n```"]


def test_more_than_four_stop_strings_apply_locally(server):
    server.respond = lambda body: "keep this<s5>drop this"
    gen = OpenAIGenerator("m", base_url=server.url)
    stops = ["<s1>", "<s2>", "<s3>", "<s4>", "<s5>"]
    assert gen.chat([user("x")], SamplingConfig(stop=stops)) == ["keep this"]
    assert server.requests[0].body["stop"] == stops[:4]  # the API's limit
    gen.chat([user("y")], SamplingConfig())
    assert "stop" not in server.requests[1].body
    # a server of our own (vLLM, SGLang, llama.cpp) gets them all, so it stops where we cut
    OpenAIGenerator("m", base_url=server.url, max_stop_strings=None).chat([user("z")], SamplingConfig(stop=stops))
    assert server.requests[2].body["stop"] == stops


def test_stop_after_code_truncates_the_reply(server):
    reply = "Here:\n```python\ndef f():\n    return 1\n```\nExample usage:\n```python\nprint(f())\n```\n"
    server.respond = lambda body: reply
    gen = OpenAIGenerator("m", base_url=server.url)
    code_only = "Here:\n```python\ndef f():\n    return 1\n```"
    assert gen.chat([user("x")], SamplingConfig(stop_after_code=True)) == [code_only]
    assert gen.chat([user("x")], SamplingConfig(stop_after_code=False)) == [reply]


def test_tiny_model_behind_the_server(hf_server, tiny_hf):
    gen = OpenAIGenerator("tiny-random", base_url=hf_server.url, max_concurrency=2)
    convs = [user("Write a function that adds two numbers."), user("Reverse a string in python.")]
    greedy, sampled = SamplingConfig(max_new_tokens=12), SamplingConfig(max_new_tokens=12, temperature=0.7, seed=3)
    for sampling in (greedy, sampled):
        replies = gen.chat(convs, sampling)
        # what the model itself says to each conversation, as the server asks it (one per request)
        assert replies == [tiny_hf.chat([c], replace(sampling, batch_size=1))[0] for c in convs]
        assert all(replies)


def test_rate_limits_and_server_errors_are_retried(server):
    server.faults = {"flaky": [429] * 2, "broken": [500] * 3}
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=3)
    assert gen.chat([user("flaky"), user("broken"), user("fine")], SamplingConfig()) == [
        "reply to: flaky", "reply to: broken", "reply to: fine"]
    assert server.attempts == {"flaky": 3, "broken": 4, "fine": 1}
    retries = [r.headers["x-stainless-retry-count"] for r in server.requests_for("broken")]
    assert retries == ["0", "1", "2", "3"]


def test_retry_after_in_seconds_is_waited_for(server):
    server.faults = {"limited": [(429, {"retry-after": "0.4"})]}
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=1)
    assert gen.chat([user("limited")], SamplingConfig()) == ["reply to: limited"]
    first, second = server.requests_for("limited")
    assert second.at - first.at >= 0.4  # the server's delay, not the client's 0.5 s +- jitter backoff


def test_a_timeout_is_retried(server):
    server.faults = {"slow": ["hang"]}  # the first attempt only
    gen = OpenAIGenerator("m", base_url=server.url, timeout_s=0.5, max_retries=2)
    assert gen.chat([user("slow")], SamplingConfig()) == ["reply to: slow"]
    assert server.attempts["slow"] == 2


def test_a_dropped_connection_is_retried(server):
    server.faults = {"cut": ["drop"]}
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=1)
    assert gen.chat([user("cut")], SamplingConfig()) == ["reply to: cut"]
    assert server.attempts["cut"] == 2


def test_a_permanent_failure_raises_after_max_retries(server):
    server.faults = {"down": [500] * 9, "bad": [400] * 9, "denied": [401] * 9, "gone": ["drop"] * 9}
    server.hang_s = 1.0
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=2)
    with pytest.raises(OpenAIRequestError, match=r"openai:m at http://127\.0\.0\.1.*500.*gave up after 2 retries") as err:
        gen.chat([user("down")], SamplingConfig())
    assert server.attempts["down"] == 3 and err.value.cause == "server_error"
    with pytest.raises(OpenAIRequestError, match="BadRequestError.*not retried") as err:
        gen.chat([user("bad")], SamplingConfig())
    assert server.attempts["bad"] == 1 and err.value.cause == "http_400"
    with pytest.raises(OpenAIRequestError, match="AuthenticationError.*check the key in OPENAI_API_KEY") as err:
        gen.chat([user("denied")], SamplingConfig())
    assert err.value.cause == "http_401"
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=1)
    with pytest.raises(OpenAIRequestError, match="APIConnectionError.*gave up after 1 retries") as err:
        gen.chat([user("gone")], SamplingConfig())
    assert server.attempts["gone"] == 2 and err.value.cause == "connection"
    server.faults["stuck"] = ["hang"] * 9
    gen = OpenAIGenerator("m", base_url=server.url, timeout_s=0.2, max_retries=1)
    with pytest.raises(OpenAIRequestError, match="APITimeoutError.*gave up after 1 retries") as err:
        gen.chat([user("stuck")], SamplingConfig())
    assert server.attempts["stuck"] == 2 and err.value.cause == "timeout"


def test_a_reply_that_is_not_a_chat_completion_raises_at_once(server):
    server.faults = {"garbled": ["malformed"], "no choices": [(200, {})]}
    gen = OpenAIGenerator("m", base_url=server.url, max_retries=3)
    with pytest.raises(OpenAIRequestError, match="the reply is not JSON.*not retried") as err:
        gen.chat([user("garbled")], SamplingConfig())
    assert server.attempts["garbled"] == 1 and err.value.cause == "malformed_reply"
    with pytest.raises(OpenAIRequestError, match=r"no choices\[0\]\.message.*not retried") as err:
        gen.chat([user("no choices")], SamplingConfig())
    assert server.attempts["no choices"] == 1 and err.value.cause == "malformed_reply"


def test_connection_refused_raises_after_max_retries():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAIGenerator("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(OpenAIRequestError, match="APIConnectionError.*gave up after 1 retries") as err:
        gen.chat([user("x")], SamplingConfig())
    assert err.value.cause == "connection"


def test_missing_key_for_the_official_endpoint(server, monkeypatch):
    with pytest.raises(ValueError, match="OPENAI_API_KEY is not set"):
        OpenAIGenerator("gpt-4o")
    with pytest.raises(ValueError, match="DEEPSEEK_API_KEY is not set"):
        OpenAIGenerator("deepseek-chat", api_key_env="DEEPSEEK_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAIGenerator("gpt-4o").base_url.startswith("https://api.openai.com/v1")  # no request made
    monkeypatch.delenv("OPENAI_API_KEY")
    gen = OpenAIGenerator("m", base_url=server.url)  # a local server: a dummy key will do
    assert gen.chat([user("x")], SamplingConfig()) == ["reply to: x"]
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_llm_teacher_debugs_through_the_server(hf_server, tmp_path):
    model = hf_server.respond  # its noise in a python fence: a version (unfenced it holds no code)
    hf_server.respond = lambda body: f"```python\n# the model wrote:\n{model(body)}\n```"
    problems = load_seed("data/seed/problems.jsonl", limit=1)
    cfg = {"kind": "llm", "backend": "openai", "model": "tiny-random", "base_url": hf_server.url,
           "max_concurrency": 2, "max_retries": 1,
           "sampling": {"max_new_tokens": 24, "temperature": 0.7, "top_p": 0.95, "stop_after_code": True}}
    teacher = make_teacher(cfg, SandboxConfig())
    assert teacher.name == "llm:openai:tiny-random"
    debug_cfg = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=1, workers=1)
    trajs, _ = debugging.run(problems, teacher, debug_cfg, SandboxConfig(timeout_s=5),
                             resume_log=tmp_path / "log.jsonl")
    (traj,) = trajs
    assert [a.round for a in traj.attempts] == [0, 1] and not traj.solved
    first, second = (r.body for r in hf_server.requests)
    assert first["seed"] == second["seed"] == traj.seed  # sampling seeded per trajectory
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][:1] == first["messages"]
    outcome = traj.attempts[0].outcome
    feedback = second["messages"][-1]["content"]
    assert "Fix the code" in feedback and outcome.status in feedback
    assert (outcome.traceback.strip() or "(no output)")[:50] in feedback
