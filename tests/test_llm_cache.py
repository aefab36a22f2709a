"""The on-disk response cache, in front of the OpenAI-compatible backend and a real server on
127.0.0.1 (`chat_server`): the server counts the requests a cache must save."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
from chat_server import hermetic_env, server, user  # noqa: F401 (fixtures)

from iterpref.llm.base import SamplingConfig
from iterpref.llm.cache import CachedGenerator
from iterpref.llm.openai_api import OpenAIGenerator, OpenAIRequestError

SAMPLING = SamplingConfig(max_new_tokens=32, temperature=0.7, top_p=0.95, seed=11)


def cached(server, cache_dir: Path, **options) -> CachedGenerator:
    return CachedGenerator(OpenAIGenerator("m", base_url=server.url, **options), cache_dir)


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*/*.json"))


def test_a_second_run_makes_no_request(server, tmp_path):
    convs = [user(f"problem {i}") for i in range(5)]
    first = cached(server, tmp_path)
    replies = first.chat(convs, SAMPLING)
    assert len(server.requests) == 5 and first.stats() == {"hits": 0, "misses": 5}
    again = cached(server, tmp_path)  # a restarted process: nothing shared but the directory
    assert again.chat(convs, SAMPLING) == replies
    assert len(server.requests) == 5 and again.stats() == {"hits": 5, "misses": 0}
    # a call mixing hits and misses sends only the misses, and keeps the order
    more = [user("new 1"), user("problem 2"), user("new 2")]
    assert again.chat(more, SAMPLING) == ["reply to: new 1", "reply to: problem 2", "reply to: new 2"]
    assert sorted(r.body["messages"][0]["content"] for r in server.requests[5:]) == ["new 1", "new 2"]
    entry = json.loads(entries(tmp_path)[0].read_text())
    assert set(entry) == {"request", "reply"} and entry["request"]["generator"]["base_url"] == server.url + "/"


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(SamplingConfig)])
def test_a_changed_sampling_field_misses(server, tmp_path, field):
    changed = {"max_new_tokens": 33, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n\n"],
               "stop_after_code": not SAMPLING.stop_after_code, "batch_size": 4, "seed": 12}
    assert set(changed) == {f.name for f in dataclasses.fields(SamplingConfig)}  # every field tried
    gen = cached(server, tmp_path)
    gen.chat([user("x")], SAMPLING)
    gen.chat([user("x")], dataclasses.replace(SAMPLING, **{field: changed[field]}))
    assert len(server.requests) == 2 and gen.stats() == {"hits": 0, "misses": 2}


def test_the_generator_and_the_messages_are_in_the_key(server, tmp_path):
    base = cached(server, tmp_path)
    key = base.key(user("x"), SAMPLING)
    assert key == cached(server, tmp_path).key(user("x"), SAMPLING)
    assert key != base.key(user("y"), SAMPLING)
    assert key != base.key([{"role": "system", "content": "be brief"}, *user("x")], SAMPLING)
    other_model = CachedGenerator(OpenAIGenerator("m2", base_url=server.url), tmp_path)
    other_server = CachedGenerator(OpenAIGenerator("m", base_url="http://127.0.0.1:9/v1"), tmp_path)
    other_dtype = CachedGenerator(OpenAIGenerator("m", base_url=server.url), tmp_path, {"dtype": "bfloat16"})
    assert len({key, *(g.key(user("x"), SAMPLING) for g in (other_model, other_server, other_dtype))}) == 4


def test_a_failed_request_is_not_cached(server, tmp_path):
    server.faults = {"x": [500] * 2}
    gen = cached(server, tmp_path, max_retries=1)
    with pytest.raises(OpenAIRequestError):
        gen.chat([user("x")], SAMPLING)
    assert entries(tmp_path) == []
    assert gen.chat([user("x")], SAMPLING) == ["reply to: x"]  # asked again, answered this time
    assert server.attempts["x"] == 3 and len(entries(tmp_path)) == 1


def test_a_damaged_entry_is_a_miss_and_is_written_again(server, tmp_path):
    convs = [user(f"c{i}") for i in range(3)]
    cached(server, tmp_path).chat(convs, SAMPLING)
    torn, bad_utf8, _ = entries(tmp_path)
    torn.write_bytes(torn.read_bytes()[:40])  # cut short
    bad_utf8.write_bytes(b"\xff\xfe{")
    (torn.parent / f".{torn.stem[:12]}.abc.tmp").write_text('{"reply": "stray"')  # a kill -9 mid-write
    gen = cached(server, tmp_path)
    assert gen.chat(convs, SAMPLING) == [f"reply to: c{i}" for i in range(3)]
    assert gen.stats() == {"hits": 1, "misses": 2} and len(server.requests) == 5
    assert all(json.loads(p.read_text())["reply"].startswith("reply to: c") for p in entries(tmp_path))


class Echo:
    """An in-process generator that counts the conversations it answers."""

    name = "echo"

    def __init__(self):
        self.answered = 0
        self._lock = threading.Lock()

    def chat(self, conversations, sampling, progress=None):
        with self._lock:
            self.answered += len(conversations)
        return [f"{sampling.seed}: {c[-1]['content']}" * 50 for c in conversations]


def test_concurrent_writers_share_a_directory(tmp_path):
    """Threads of two cache instances (two processes' worth) write the same keys at once."""
    inner = Echo()
    caches = [CachedGenerator(inner, tmp_path), CachedGenerator(inner, tmp_path)]
    convs = [user(f"c{i}") for i in range(10)]
    expected = [f"0: c{i}" * 50 for i in range(10)]
    start, wrong = threading.Barrier(8), []

    def work(k: int):
        start.wait()
        for _ in range(5):
            for c, want in zip(convs, expected):
                if caches[k % 2].chat([c], SamplingConfig(seed=0)) != [want]:
                    wrong.append(c)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert wrong == []
    assert len(entries(tmp_path)) == 10 and not list(tmp_path.glob("*/*.tmp"))
    assert sorted(json.loads(p.read_text())["reply"] for p in entries(tmp_path)) == sorted(expected)
    assert sum(c.hits + c.misses for c in caches) == 8 * 5 * 10 and inner.answered == sum(c.misses for c in caches)
