"""Stage `evaluate@VARIANT-BENCHMARK`: greedy pass@1 -> reports/eval/VARIANT/BENCHMARK.json,
and the samples in the benchmark's official format -> reports/eval/VARIANT/BENCHMARK.samples.jsonl.

VARIANT `reference` is the untrained student (models/student); others are models/trained/VARIANT.
`eval.backend` generates in-process (`hf`) or through a server the stage starts on the model
folder and stops at its end (`vllm`, `sglang`, `llama_cpp`; settings in `eval.server`).
A broken evaluation environment (missing data, failing reference solutions) stops the stage
with an error that says so, and the result file records it instead of a score.
"""

import json
import sys
from pathlib import Path

from iterpref import params as P
from iterpref import runtime, tracking
from iterpref.cli import command
from iterpref.evaluation import registry
from iterpref.evaluation.benchmark import SetupError
from iterpref.evaluation.run import evaluate, generator_for, settings_for
from iterpref.llm.served import ServerConfig
from iterpref.records import write_jsonl
from iterpref.sandbox import SandboxConfig


@command
def main() -> None:
    variant, benchmark = sys.argv[1], sys.argv[2]
    params = P.load()
    runtime.configure(params)
    ecfg = params["eval"]
    out = Path("reports/eval") / variant / f"{benchmark}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    model_dir = Path("models/student") if variant == "reference" else Path("models/trained") / variant
    sampling, limit = settings_for(ecfg, benchmark)
    backend = ecfg["backend"]
    try:
        bench = registry.get(benchmark, ecfg["data"])
        server = None if backend == "hf" else P.build(ServerConfig, ecfg["server"], "eval.server")
        with generator_for(backend, model_dir, ecfg["dtype"], params["runtime"]["device"], params["runtime"]["threads"],
                           ecfg["prompt_lookup"], server) as (generator, generation):
            report, samples = evaluate(
                generator, bench, sampling, P.build(SandboxConfig, params["sandbox"], "sandbox"), limit=limit,
                timeout_s=ecfg["timeout_s"], gate=ecfg["sanity_gate"], generation=generation,
                prompt_style=ecfg["prompt"])
    except SetupError as err:
        out.write_text(json.dumps({"benchmark": benchmark, "variant": variant, "error": str(err),
                                   "error_kind": "evaluation environment, not the model"}, indent=2) + "\n")
        raise SetupError(f"evaluate {variant} {benchmark}: {err}") from None
    report["variant"] = variant
    report["peak_rss_gib"] = runtime.peak_rss_gib()
    out.write_text(json.dumps(report, indent=2) + "\n")
    write_jsonl(out.with_suffix(".samples.jsonl"), samples)
    tracking.log_eval(params, variant, report)
    print(f"{variant} {benchmark}: pass@1 = {report['pass@1']:.3f} ({report['passed']}/{report['tasks']}); "
          f"errors {report['error_types']}; timings {report['timings_s']}; "
          f"peak RSS {report['peak_rss_gib']} GiB")


if __name__ == "__main__":
    main()
