"""`make bench`'s aggregator (bench/run_all.py) on a folder of tiny bench scripts, and the
headline JSON (`bench.result`) of a real bench script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import processes
import pytest

from bench.result import Metric, read

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "bench" / "run_all.py"

FAST = f'''
import sys
sys.path.insert(0, {str(ROOT)!r})  # a script in another folder: the repository root, for `bench`
''' + '''
import argparse
from bench import result as bench_result
from bench.result import Metric

MAKE_BENCH = {"args": ["--n", "3"]}

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=100)
bench_result.add_json_option(ap)
args = ap.parse_args()
print(f"timing {args.n} things")
bench_result.write(args.json, "bench_fast", [
    Metric("ours / theirs time", 0.25 * args.n, "x", "<= 1.02"),
    Metric("differing verdicts", 0, "", "== 0"),
    Metric("throughput", 1234.5678, "tok/s"),
])
'''
BROKEN = '''
MAKE_BENCH = {"args": []}
print("warming up")
raise RuntimeError("the model folder models/student is missing")
'''
GPU = '''
MAKE_BENCH = {"args": [], "needs": "cuda"}
import sys
sys.exit("ran without a GPU")
'''
PLAIN = 'print("a bench that declares nothing")\n'


@pytest.fixture(scope="module")
def run_all():
    from bench import run_all

    return run_all


def test_results_md_holds_every_bench_and_the_machine(tmp_path):
    benches = tmp_path / "bench"
    benches.mkdir()
    for name, text in [("bench_fast", FAST), ("bench_broken", BROKEN), ("bench_gpu", GPU), ("bench_plain", PLAIN),
                       ("helper", "raise SystemExit('not a bench: never run')")]:
        (benches / f"{name}.py").write_text(text)
    out = tmp_path / "results.md"
    done = processes.run([sys.executable, str(RUN_ALL), "--bench-dir", str(benches), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # one script failed
    assert "timing 3 things" in done.stdout and "warming up" in done.stdout  # output streamed through
    md = out.read_text()
    for key in ("| date |", "| commit |", "| CPU |", "| cores |", "| RAM |", "| GPU |", "| torch |"):
        assert key in md
    assert "| bench_fast | ours / theirs time | 0.750x | <= 1.02 | yes |" in md  # --n 3 from MAKE_BENCH
    assert "| bench_fast | differing verdicts | 0 | == 0 | yes |" in md
    assert "| bench_fast | throughput | 1235 tok/s |  |  |" in md
    assert "failed (exit 1): RuntimeError: the model folder models/student is missing |" in md
    gpu_row = next(line for line in md.splitlines() if line.startswith("| bench_gpu |"))
    gpu_present = processes.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                                 capture_output=True, text=True).stdout.strip() == "True"
    assert ("ran without a GPU" in gpu_row) if gpu_present else gpu_row.endswith("skipped: needs a GPU (torch sees none) |")
    assert "| bench_plain |" in md and "no headline (the script declares no MAKE_BENCH)" in md
    assert "helper" not in md and "never run" not in done.stdout


def test_a_malformed_make_bench_names_file_line_and_field(tmp_path, run_all):
    script = tmp_path / "bench_bad.py"
    script.write_text('"""doc"""\n\nMAKE_BENCH = {"args": ["--n", 3]}\n')
    with pytest.raises(ValueError, match=r"bench_bad\.py:3: MAKE_BENCH\.args: must be a list of strings"):
        run_all.declared(script)
    script.write_text('MAKE_BENCH = {"args": [], "needs": "tpu"}\n')
    with pytest.raises(ValueError, match=r"bench_bad\.py:1: MAKE_BENCH\.needs: must be one of"):
        run_all.declared(script)


def test_every_bench_script_here_declares_how_make_bench_runs_it(run_all):
    mine = {"bench_generation", "bench_sandbox", "bench_scoring", "bench_train"}
    specs = {p.stem: run_all.declared(p) for p in sorted((ROOT / "bench").glob("bench_*.py"))}
    assert mine <= set(specs)
    for name in mine:
        assert specs[name]["args"] and specs[name]["needs"] is None, name


def test_bench_sandbox_writes_its_headline(tmp_path):
    out = tmp_path / "sandbox.json"
    done = processes.run([sys.executable, str(ROOT / "bench/bench_sandbox.py"), "--runs", "3", "--chunk", "3",
                          "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    bench, metrics, details = read(out)
    assert bench == "bench_sandbox" and details["runs"] == 3
    names = {m.name: m for m in metrics}
    assert names["new runs/s"].value > 0 and names["old runs/s"].value > 0
    assert names["new / old time"].goal == "<= 1.3"


def test_goals_and_bad_results():
    assert Metric("r", 1.01, "x", "<= 1.02").met() is True
    assert Metric("r", 0.9, "x", ">= 1.0").met() is False
    assert Metric("r", 5).met() is None
    with pytest.raises(ValueError, match="goal 'about 1'"):
        Metric("r", 1, goal="about 1").met()


def test_read_names_a_file_that_is_not_a_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"bench": "b", "metrics": [{"value": 1}]}))
    with pytest.raises(ValueError, match=r"x\.json: not a bench result"):
        read(bad)
