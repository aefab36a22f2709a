"""The CPU time each test of one debug attempt uses, idle and beside two busy-looping processes:
the attempt's code and its problem's tests run test by test in the sandbox (run_python, limits far
above the debug stage's), each test's ``time.process_time()`` printed.

    python bench/results/cpu_per_test_under_load_2026-12-07.py data/trajectories.jsonl 'seed/047#0' 0
"""
import json
import subprocess
import sys

from iterpref.sandbox import SandboxConfig, run_python

trajectories, trajectory_id, attempt = sys.argv[1], sys.argv[2], int(sys.argv[3])
trajectory = next(t for t in map(json.loads, open(trajectories)) if t["trajectory_id"] == trajectory_id)
code = trajectory["attempts"][attempt]["code"]
tests = next(p for p in map(json.loads, open("data/problems.jsonl")) if p["task_id"] == trajectory["task_id"])["tests"]
RUNNER = """
import time, unittest
import test_solution

def flat(suite):
    for t in suite:
        yield from (flat(t) if isinstance(t, unittest.TestSuite) else [t])

for test in flat(unittest.defaultTestLoader.loadTestsFromModule(test_solution)):
    start, result = time.process_time(), unittest.TestResult()
    test.run(result)
    print(test.id().split(".")[-1], round(time.process_time() - start, 2), "error" if result.errors else
          "failed" if result.failures else "ok", flush=True)
"""
limits = SandboxConfig(timeout_s=600, cpu_s=300, total_cpu_s=300)


def once(label: str) -> None:
    res = run_python(["runner.py"], files={"runner.py": RUNNER, "solution.py": code, "test_solution.py": tests},
                     config=limits)
    print(label, " | ".join(res.stdout.splitlines()), res.stderr[-300:])


once("idle")
hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
try:
    once("loaded")
finally:
    for hog in hogs:
        hog.kill()
