"""Stage `problems`: validated tasks with unittest tests in data/problems.jsonl."""

from iterpref import params as P
from iterpref.problems import load_seed
from iterpref.records import write_jsonl

if __name__ == "__main__":
    cfg = P.load()["problems"]
    if cfg["source"] != "seed":
        raise SystemExit(f"params.yaml: problems.source: unknown {cfg['source']!r}; expected 'seed'")
    n = write_jsonl("data/problems.jsonl", load_seed(cfg["path"], cfg["limit"]))
    print(f"{n} problems -> data/problems.jsonl")
