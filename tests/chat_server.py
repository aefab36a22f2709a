"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for the tests of the
`openai_api` backend, the teacher's fault handling and the response cache.

No mocks: `ChatServer` is a stdlib ``ThreadingHTTPServer`` speaking the chat-completions
protocol. It records every request, counts attempts per conversation, and can answer an
attempt with a fault instead of a reply: an HTTP error status, a hang past the client's
timeout, a dropped connection or a body that is not JSON. Error answers carry
``retry-after-ms: 10`` unless a test gives its own headers (as OpenAI's do), which the openai
client honours, so retries here take milliseconds, not the default backoff.

It also answers ``GET /health`` and ``GET /v1/models`` as vLLM does, and runs on its own as a
stand-in for ``vllm serve`` (the served backend's tests start it through the real launcher):

    python tests/chat_server.py --port N --model M [--reply TEXT | --hf] [--unhealthy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOLD_TIMEOUT_S = 5.0  # the longest a held request waits for company
RETRY_FAST = {"retry-after-ms": "10"}


@dataclass
class Seen:
    """One request as the server received it (``at``: time.monotonic() on arrival)."""

    headers: dict[str, str]
    body: dict
    at: float = field(default_factory=time.monotonic)


def last_user(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def echo(body: dict) -> str:
    return f"reply to: {last_user(body)}"


class ChatServer(ThreadingHTTPServer):
    """``POST /v1/chat/completions`` -> ``respond(body)`` as a ``chat.completion`` object.

    Attributes tests set:
        respond: the reply text for a request body.
        faults: ``{marker: [action, ...]}``: the n-th attempt of a conversation whose last user
            message contains ``marker`` gets the n-th action; attempts past the list get a reply.
            An action is an HTTP status (an error body with ``retry-after-ms: 10``), a
            ``(status, headers)`` pair, ``"hang"`` (sleep ``hang_s``, then hang up),
            ``"drop"`` (close the connection without an answer) or ``"malformed"`` (200 with
            a body that is not JSON).
        hang_s: how long a hung request sleeps.
        hold: keep the first requests waiting until this many are in flight together.
        model_id: the model ``/v1/models`` lists.
        unhealthy: answer ``/health`` with 503 (a server still loading its model).
    """

    daemon_threads = True
    # socketserver listens with a backlog of 5: 32 clients connecting at once overflow it, the
    # kernel drops their SYNs, and they retry a second later (real servers: 2048 and more).
    request_queue_size = 256

    def __init__(self, respond, port: int = 0, model_id: str = "stand-in"):
        super().__init__(("127.0.0.1", port), ChatHandler)
        self.respond = respond
        self.model_id, self.unhealthy = model_id, False
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.requests: list[Seen] = []
        self.attempts: Counter[str] = Counter()
        self.faults: dict[str, list] = {}
        self.hang_s = 2.0
        self.hold = 0
        self.in_flight = self.max_in_flight = 0
        self._held = False
        self.cond = threading.Condition()

    def handle_error(self, request, client_address):
        """A client that timed out and hung up is expected here; keep pytest output clean."""

    def admit(self, seen: Seen):
        """Record a request; returns the fault action for this attempt, or None to reply."""
        text = last_user(seen.body)
        with self.cond:
            self.requests.append(seen)
            self.attempts[text] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= self.hold:
                self._held = True
                self.cond.notify_all()
            self.cond.wait_for(lambda: self._held, timeout=HOLD_TIMEOUT_S)
            actions = next((a for marker, a in self.faults.items() if marker in text), [])
            n = self.attempts[text]
            return actions[n - 1] if n <= len(actions) else None

    def leave(self):
        with self.cond:
            self.in_flight -= 1

    def requests_for(self, marker: str) -> list[Seen]:
        """The requests whose last user message contains ``marker``, in arrival order."""
        return [r for r in self.requests if marker in last_user(r.body)]


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer
    # Connections are kept alive, as real servers (vLLM's uvicorn, OpenAI) keep them: HTTP/1.0
    # cost a TCP connection and a server thread per request. A reply is two writes (headers,
    # then body), so Nagle's algorithm is off or the body waits for the client's delayed ACK.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, headers: dict[str, str]):
        body = {"error": {"message": f"injected {status}", "type": "server_error"}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_GET(self):
        if self.path == "/health":
            return self._send(503 if self.server.unhealthy else 200, b"{}")
        if self.path == "/v1/models":
            model = {"id": self.server.model_id, "object": "model", "owned_by": "stand-in"}
            return self._send(200, json.dumps({"object": "list", "data": [model]}).encode())
        self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            body = {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            return self._send(404, json.dumps(body).encode())
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = self.server.admit(Seen({k.lower(): v for k, v in self.headers.items()}, body))
        try:
            if isinstance(action, int):
                return self._error(action, RETRY_FAST)
            if isinstance(action, tuple):
                return self._error(*action)
            if action == "hang":
                time.sleep(self.server.hang_s)  # the client has given up by now
                self.close_connection = True
                return
            if action == "drop":
                self.close_connection = True  # no status line: the client sees the peer hang up
                return
            if action == "malformed":
                return self._send(200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
            assert action is None, f"unknown fault action {action!r}"
            content = self.server.respond(body)
            self._send(200, json.dumps({
                "id": f"chatcmpl-{len(self.server.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode())
        finally:
            self.server.leave()


@contextmanager
def serving(respond=echo):
    """A started `ChatServer`, shut down and closed on exit."""
    server = ChatServer(respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch):
    """Nothing from the environment may redirect traffic off 127.0.0.1 or add credentials
    (import this fixture into a test module to apply it there)."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
                "OPENAI_CUSTOM_HEADERS", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with serving(echo) as s:
        yield s


def hf_responder(generator):
    """``respond`` for a "vLLM-like" server: an `HFGenerator` answers each request with the
    request's sampling, one request at a time."""
    from iterpref.llm.base import SamplingConfig

    lock = threading.Lock()

    def respond(body: dict) -> str:
        stop = body.get("stop") or []
        sampling = SamplingConfig(
            max_new_tokens=body["max_tokens"], temperature=body["temperature"], top_p=body["top_p"],
            seed=body["seed"], stop=[stop] if isinstance(stop, str) else stop, batch_size=1)
        with lock:
            return generator.chat([body["messages"]], sampling)[0]

    return respond


def main() -> None:
    """Serve until killed: the stand-in for ``vllm serve`` in the served backend's tests."""
    ap = argparse.ArgumentParser(description="An OpenAI-compatible stand-in server on 127.0.0.1.")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True, help="the model name /v1/models lists (with --hf: an HF folder)")
    ap.add_argument("--reply", default=None, help="answer every request with this text (default: an echo)")
    ap.add_argument("--hf", action="store_true", help="answer with the HF model in the folder --model")
    ap.add_argument("--unhealthy", action="store_true", help="answer /health with 503 forever")
    args = ap.parse_args()
    if args.hf:
        from iterpref.llm.hf import HFGenerator

        respond = hf_responder(HFGenerator(args.model, device="cpu"))
    else:
        respond = (lambda body: args.reply) if args.reply is not None else echo
    server = ChatServer(respond, port=args.port, model_id=args.model)
    server.unhealthy = args.unhealthy
    print(f"stand-in server for {args.model} on {server.url}, pid {os.getpid()}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
