"""Problem synthesis costs: CodeI/O validation throughput, and the orchestration overhead of
teacher calls against a local OpenAI-compatible server that answers after a fixed latency.

1. ``codeio``: the synthesize stage's build on the CodeI/O problems (``--codeio N``, 3002 = all):
   tests generated and validated in the sandbox; problems per second and the share kept.
2. ``overhead``: the `synthesize` source asks ``--requests`` problems of ``tests/chat_server.py``
   answering each after ``--latency-s``, ``--concurrency`` in flight, through the response
   cache (fresh) and reply parsing. The latency-bound ideal is
   ``ceil(requests / concurrency) * latency``; the goal is a wall time of at most 1.2x that.
   Each round reports the client's and the server's CPU seconds (both share this machine's
   cores) and the requests the server received (more than ``--requests``: retries).

Usage: python bench/bench_problems.py [--codeio 3002] [--requests 200 --concurrency 32 --latency-s 0.1]
       [--repeat 3] [--skip-codeio] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the chat-completions server the tests use

from chat_server import last_user, serving  # noqa: E402

from iterpref import params as P  # noqa: E402
from iterpref.problems import synthesize  # noqa: E402
from iterpref.problems.build import build  # noqa: E402
from iterpref.sandbox import SandboxConfig  # noqa: E402

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(ROOT))
from bench import result as bench_result  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--codeio", "100"]}  # how `make bench` runs it (bench/run_all.py); 3002 = the full run

REPLY = """Instruction:
Return the sum of the numbers {i} and x.

Entry point: add_{i}

```python
def add_{i}(x):
    return x + {i}
```

```python
import unittest
from solution import add_{i}

class T(unittest.TestCase):
    def test_a(self):
        self.assertEqual(add_{i}(1), {i} + 1)
```
"""


def bench_codeio(n: int) -> dict:
    params = P.compose(["problems=codeio", f"problems.limit={n}"])
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    with tempfile.TemporaryDirectory() as resume:
        start = time.perf_counter()
        problems, report = build(params["problems"], sandbox, params["eval"]["data"], resume_dir=resume)
        wall = time.perf_counter() - start
    return {"problems": n, "kept": len(problems), "kept_share": report["kept_share"], "wall_s": round(wall, 1),
            "problems_per_s": round(n / wall, 3), "validation": report["validation"], "dropped": report["dropped"],
            "tests": report["tests"], "decontaminated": report["decontamination"]["removed"]}


def _serve(latency_s: float, conn) -> None:
    """The server process: answers each request after ``latency_s``; sends its URL, then on
    ``"count"`` its CPU seconds and the requests it received so far, on ``"stop"`` its largest
    number of requests in flight."""
    def respond(body: dict) -> str:
        time.sleep(latency_s)
        return REPLY.format(i=int(last_user(body).rsplit("#", 1)[1]))

    with serving(respond) as server:
        conn.send(server.url)
        while conn.recv() == "count":
            conn.send((time.process_time(), len(server.requests)))
        conn.send(server.max_in_flight)


def _server_counts(conn) -> tuple[float, int]:
    conn.send("count")
    return conn.recv()


def bench_overhead(requests: int, concurrency: int, latency_s: float, repeat: int) -> dict:
    """``repeat`` rounds against one server process, each with new requests and a fresh cache;
    the first round also pays the openai client's one-off set-up (its TLS context, lazy imports)."""
    import importlib
    import multiprocessing

    importlib.import_module("iterpref.llm.openai_api")  # a one-off import, ~1 s, not part of any round

    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(latency_s, theirs), daemon=True)
    server.start()
    url = ours.recv()
    ideal = math.ceil(requests / concurrency) * latency_s
    rounds = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            teacher = {"backend": "openai", "model": "bench", "base_url": url, "max_concurrency": concurrency,
                       "timeout_s": 30, "max_retries": 2, "cache_dir": cache,
                       "sampling": {"max_new_tokens": 512, "temperature": 0.0, "batch_size": concurrency,
                                    "stop_after_code": False}}  # the reply holds several code blocks
            features = [{"kind": "topic", "text": f"task #{r * requests + i}"} for i in range(requests)]
            cfg = synthesize.Config(teacher=teacher, features=features, prompts={"topic": "Write a task about {feature}"},
                                    samples_per_feature=1)
            server_cpu, received = _server_counts(ours)
            start, cpu = time.perf_counter(), time.process_time()
            harvest = synthesize.harvest(cfg)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            server_cpu, received = (now - before for now, before in zip(_server_counts(ours), (server_cpu, received)))
        rounds.append({"candidates": len(harvest.candidates), "wall_s": round(wall, 3), "ratio": round(wall / ideal, 3),
                       "client_cpu_s": round(cpu, 3), "server_cpu_s": round(server_cpu, 3),
                       "server_requests": received, "cache": harvest.stats.get("teacher_cache")})
    ours.send("stop")
    max_in_flight = ours.recv()
    server.join(timeout=10)
    return {"requests": requests, "concurrency": concurrency, "latency_s": latency_s, "ideal_s": round(ideal, 3),
            "max_in_flight": max_in_flight, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codeio", type=int, default=3002)
    parser.add_argument("--skip-codeio", action="store_true")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-s", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3, help="overhead rounds (the first one is cold)")
    parser.add_argument("--out", help="also write the results here as JSON")
    bench_result.add_json_option(parser)
    args = parser.parse_args()
    results = {"overhead": bench_overhead(args.requests, args.concurrency, args.latency_s, args.repeat)}
    print(json.dumps(results["overhead"]), flush=True)
    if not args.skip_codeio:
        results["codeio"] = bench_codeio(args.codeio)
        print(json.dumps(results["codeio"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    warm = results["overhead"]["rounds"][1:] or results["overhead"]["rounds"]  # the first round is cold
    metrics = [Metric("teacher-call wall / latency-bound ideal (warm rounds, median)",
                      sorted(r["ratio"] for r in warm)[len(warm) // 2], "x", "<= 1.2")]
    if "codeio" in results:
        metrics += [Metric("CodeI/O problems validated per second", results["codeio"]["problems_per_s"], "problems/s"),
                    Metric("CodeI/O share kept", results["codeio"]["kept_share"])]
    bench_result.write(args.json, "bench_problems", metrics, {k: v for k, v in vars(args).items() if k != "json"})


if __name__ == "__main__":
    main()
