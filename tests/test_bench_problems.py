"""bench/bench_problems.py's overhead measurement, small: real synthesize harvests against the
chat-completions stand-in in its own process."""

from __future__ import annotations

from chat_server import hermetic_env  # noqa: F401 (fixture)


def test_overhead_rounds_count_every_request_once():
    from bench import bench_problems as bench

    out = bench.bench_overhead(requests=12, concurrency=4, latency_s=0.05, repeat=2)
    assert out["ideal_s"] == 0.15 and out["max_in_flight"] == 4
    for r in out["rounds"]:
        # every reply parsed into a problem, each request sent once (no retry), through a fresh cache
        assert r["candidates"] == 12 and r["server_requests"] == 12
        assert r["cache"] == {"hits": 0, "misses": 12}
        assert r["wall_s"] >= 0.15 and abs(r["ratio"] - r["wall_s"] / 0.15) < 0.01
        assert r["client_cpu_s"] > 0 and r["server_cpu_s"] > 0
