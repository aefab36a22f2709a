"""Stage `synthesize`: validated, decontaminated tasks with unittest tests in data/problems.jsonl,
and what was kept and dropped (by reason) in reports/problems.json.

Resumable: each validated problem goes to .cache/problems/<hash>.jsonl as it finishes; an
interrupted run resumes from it, a finished run deletes it. A teacher's replies (the
`synthesize` source) are cached on disk, so a restart pays for no request twice.
"""

import json
from pathlib import Path

from iterpref import params as P
from iterpref import runtime
from iterpref.cli import command
from iterpref.problems.build import build
from iterpref.records import write_jsonl
from iterpref.sandbox import SandboxConfig


@command
def main() -> None:
    params = P.load()
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    problems, report = build(params["problems"], sandbox, params.get("eval", {}).get("data"))
    n = write_jsonl("data/problems.jsonl", problems)
    report["peak_rss_gib"] = runtime.peak_rss_gib()
    Path("reports").mkdir(exist_ok=True)
    Path("reports/problems.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: report[k] for k in ("source", "candidates", "kept", "dropped", "tests")}
    print(f"{n} problems -> data/problems.jsonl; {json.dumps(summary)}")


if __name__ == "__main__":
    main()
