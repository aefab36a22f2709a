"""Stage `pairs`: preference pairs with error spans, split by problem -> data/pairs.jsonl (training),
data/pairs_heldout.jsonl (the probe stage's held-out pairs), reports/pairs.json."""

import json
from pathlib import Path

from iterpref import params as P
from iterpref.cli import command
from iterpref.pairs.build import PairConfig, build_pairs, split_by_problem
from iterpref.records import Problem, Trajectory, read_jsonl, write_jsonl


@command
def main() -> None:
    cfg = P.build(PairConfig, P.load()["pairs"], "pairs")
    problems = {p.task_id: p for p in read_jsonl("data/problems.jsonl", Problem)}
    pairs, stats = build_pairs(problems, read_jsonl("data/trajectories.jsonl", Trajectory), cfg)
    training, heldout = split_by_problem(pairs, cfg.heldout_fraction, cfg.seed)
    write_jsonl("data/pairs.jsonl", training)
    write_jsonl("data/pairs_heldout.jsonl", heldout)
    stats.update({"training_pairs": len(training), "training_problems": len({p.task_id for p in training}),
                  "heldout_pairs": len(heldout), "heldout_problems": len({p.task_id for p in heldout})})
    Path("reports").mkdir(exist_ok=True)
    Path("reports/pairs.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{len(pairs)} pairs: {len(training)} -> data/pairs.jsonl, {len(heldout)} held out -> "
          f"data/pairs_heldout.jsonl; stats -> reports/pairs.json")


if __name__ == "__main__":
    main()
