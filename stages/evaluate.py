"""Stage `evaluate@VARIANT-BENCHMARK`: greedy pass@1 -> reports/eval/VARIANT/BENCHMARK.json.

VARIANT `reference` is the untrained student (models/student); others are models/trained/VARIANT.
"""

import json
import sys
from pathlib import Path

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.evaluation.run import evaluate
from iterpref.llm import make_generator
from iterpref.llm.base import SamplingConfig
from iterpref.sandbox import SandboxConfig

if __name__ == "__main__":
    variant, benchmark = sys.argv[1], sys.argv[2]
    params = P.load()
    runtime.configure(params)
    ecfg = params["eval"]
    model_dir = Path("models/student") if variant == "reference" else Path("models/trained") / variant
    generator = make_generator("hf", str(model_dir), device=params["runtime"]["device"])
    report = evaluate(
        generator, benchmark, P.build(SamplingConfig, ecfg["sampling"], "eval.sampling"),
        P.build(SandboxConfig, params["sandbox"], "sandbox"), limit=ecfg["limit"], timeout_s=ecfg["timeout_s"],
    )
    report["variant"] = variant
    out = Path("reports/eval") / variant / f"{benchmark}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    tracking.log_eval(params, variant, report)
    print(f"{variant} {benchmark}: pass@1 = {report['pass@1']:.3f} ({report['passed']}/{report['tasks']})")
