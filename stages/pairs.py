"""Stage `pairs`: preference pairs with error spans -> data/pairs.jsonl, reports/pairs.json."""

import json
from pathlib import Path

from iterpref import params as P
from iterpref.pairs.build import PairConfig, build_pairs
from iterpref.records import Problem, Trajectory, read_jsonl, write_jsonl

if __name__ == "__main__":
    cfg = P.build(PairConfig, P.load()["pairs"], "pairs")
    problems = {p.task_id: p for p in read_jsonl("data/problems.jsonl", Problem)}
    pairs, stats = build_pairs(problems, read_jsonl("data/trajectories.jsonl", Trajectory), cfg)
    write_jsonl("data/pairs.jsonl", pairs)
    Path("reports").mkdir(exist_ok=True)
    Path("reports/pairs.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{len(pairs)} pairs -> data/pairs.jsonl; stats -> reports/pairs.json")
