"""End to end: the smoke experiment through real DVC (`dvc exp run`, `dvc_repo.CHEAP`: 2 tasks per
benchmark, 4 training pairs) in a temporary copy of the repository, then what each kind of change
(code, data, params) makes out of date, by `dvc status`.

The stages the suite's DVC modules share (`dvc_repo.SEED_STAGES`: model to pairs, the reference's
log-probs and evaluations) run once per suite, by real DVC in a copy of their own (`seed_cache`);
here they are restored from DVC's run cache and every other stage runs."""

from __future__ import annotations

import json
import sys

import processes
import pytest
from dvc_repo import CHEAP, SEED_STAGES, ran_stages, restored_stages, sh

from iterpref import params as P
from iterpref.config import lock
from iterpref.records import Pair, Problem, Trajectory, read_jsonl

pytestmark = pytest.mark.slow


def dvc_status(root, env) -> dict:
    """`dvc status --json`."""
    return json.loads(processes.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, env=env,
                                     capture_output=True, text=True, check=True).stdout)


def changed_stages(root, env) -> set[str]:
    """The stages `dvc status` calls out of date."""
    return set(dvc_status(root, env))


def stale_after_edit(root, env, rel: str) -> set[str]:
    """The stages a one-line edit of ``rel`` makes out of date (the file is restored after)."""
    path = root / rel
    text = path.read_text()
    path.write_text(text + "# an edit\n")
    try:
        return changed_stages(root, env)
    finally:
        path.write_text(text)


def stale_with(root, env, overrides: list[str]) -> set[str]:
    """The stages out of date once params.yaml is the composition with ``overrides`` (restored after)."""
    params = root / "params.yaml"
    text = params.read_text()
    params.write_text(P.dump(P.compose(overrides, conf_dir=root / "conf")))
    try:
        return changed_stages(root, env)
    finally:
        params.write_text(text)


def test_smoke_experiment_end_to_end(seeded_dvc_repo):
    root, env = seeded_dvc_repo
    log = sh(["dvc", "exp", "run", *[a for o in CHEAP for a in ("-S", o)]], root, env)
    assert restored_stages(log) == set(SEED_STAGES), log
    assert ran_stages(log) == {"train@dpo", "train@target_dpo", "evaluate@dpo-humaneval",
                               "evaluate@target_dpo-humaneval", "evaluate@dpo-mbpp", "evaluate@target_dpo-mbpp",
                               "probe@dpo", "probe@target_dpo", "report"}, log

    # DVC's Hydra composition wrote params.yaml; it equals ours.
    assert P.load(root / "params.yaml") == P.compose(CHEAP)

    problems = read_jsonl(root / "data/problems.jsonl", Problem)
    assert len(problems) == 8
    trajectories = read_jsonl(root / "data/trajectories.jsonl", Trajectory)
    assert trajectories and all(not t.attempts[0].outcome.passed for t in trajectories)
    assert all(t.attempts[-1].outcome.passed for t in trajectories if t.solved)
    pairs = read_jsonl(root / "data/pairs.jsonl", Pair)
    heldout = read_jsonl(root / "data/pairs_heldout.jsonl", Pair)
    assert pairs and heldout and not {p.task_id for p in pairs} & {p.task_id for p in heldout}
    # Spans cover whole non-blank lines; insert-only fixes (a dropped branch put back) have none.
    assert any(p.rejected_spans for p in pairs)
    for p in pairs:
        for s, e in p.rejected_spans:
            assert p.rejected[s:e].strip() and (s == 0 or p.rejected[s - 1] == "\n")

    for variant in ("dpo", "target_dpo"):
        model_dir = root / "models/trained" / variant
        assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
        train = json.loads((root / f"reports/train/{variant}.json").read_text())
        assert train["steps"] > 0 and train["pairs"] == min(4, len(pairs))
        assert train["shared_reference"]  # its precompute read data/reference_logprobs
        assert 0.1 < train["peak_rss_gib"] < 20  # the stage's own peak: a model was loaded, under the 20 GiB cap

    for variant in ("reference", "dpo", "target_dpo"):
        for bench, ids in (("humaneval", [f"HumanEval/{i}" for i in range(2)]), ("mbpp", [f"MBPP/{i}" for i in range(11, 13)])):
            report = json.loads((root / f"reports/eval/{variant}/{bench}.json").read_text())
            assert report["tasks"] == 2 and [t["task_id"] for t in report["per_task"]] == ids
            assert 0.0 <= report["pass@1"] <= 1.0 and 0.1 < report["peak_rss_gib"] < 20
            assert sum(report["error_types"].values()) == 2 - report["passed"]
            samples = (root / f"reports/eval/{variant}/{bench}.samples.jsonl").read_text().splitlines()
            assert [json.loads(line)["task_id"] for line in samples] == ids
        assert report["sanity"] is None  # MBPP carries no reference solutions
    assert json.loads((root / "reports/eval/reference/humaneval.json").read_text())["sanity"]["pass_rate"] == 1.0

    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics) == {"reference", "dpo", "target_dpo", "data"}
    assert metrics["data"] == {"problems": 8, "pairs": len(pairs) + len(heldout), "heldout_pairs": len(heldout)}
    for variant in ("dpo", "target_dpo"):
        probe = json.loads((root / f"reports/probe/{variant}.json").read_text())
        assert probe["pairs"] == len(heldout) and metrics[variant]["heldout_accuracy"] == round(probe["accuracy"]["mean"], 4)
    assert metrics["dpo"]["train_loss"] == round(json.loads((root / "reports/train/dpo.json").read_text())["train_loss"], 4)
    summary = (root / "reports/summary.md").read_text()
    for variant in ("reference", "dpo", "target_dpo"):
        assert f"| {variant} |" in summary
    assert (root / "reports/figures/pass_at_1.png").stat().st_size > 1000
    assert list((root / "wandb").glob("offline-run-*")), "training should log a W&B offline run"

    # Nothing changed: everything is cached.
    status = sh(["dvc", "status"], root, env)
    assert "up to date" in status, status

    # What each kind of change makes out of date (`dvc status`, nothing re-run): the code's graph
    # and the params each stage really uses.
    smoke = P.compose(CHEAP)
    evals = {f"evaluate_reference@{b}" for b in ("humaneval", "mbpp")} | {
        f"evaluate@{v}-{b}" for v in ("dpo", "target_dpo") for b in ("humaneval", "mbpp")}
    assert stale_after_edit(root, env, "src/iterpref/sandbox/judge.py") == {"synthesize", "debug"} | evals
    judge = root / "src/iterpref/sandbox/judge.py"
    text = judge.read_text()
    judge.write_text(text + "# an edit\n")
    stale = lock.stale(dvc_status(root, env), lock.tracked(root))  # what `make lock-check` reports
    judge.write_text(text)
    assert set(stale) == {"synthesize", "debug"} | evals
    assert stale["debug"] == ["src/iterpref/sandbox/judge.py modified"]  # the stage lists the sandbox's modules
    assert stale_after_edit(root, env, "src/iterpref/pairs/diff.py") == {
        "pairs", "train@dpo", "train@target_dpo", "reference_logprobs", "probe@dpo", "probe@target_dpo", "report"}
    assert stale_after_edit(root, env, "src/iterpref/probe/__init__.py") == {"reference_logprobs", "probe@dpo",
                                                                             "probe@target_dpo"}
    assert stale_after_edit(root, env, "src/iterpref/reporting/summary.py") == {"report"}
    assert stale_with(root, env, [*CHEAP, "logging.wandb.project=renamed", "logging.wandb.group=g"]) == set()
    assert stale_with(root, env, [*CHEAP, "+eval.by_benchmark.mbpp.limit=4"]) == {
        "evaluate_reference@mbpp", "evaluate@dpo-mbpp", "evaluate@target_dpo-mbpp"}
    # a benchmark's data (a file in its folder, or eval.data pointing at one): its evaluations only,
    # and synthesize, which checks problems against every benchmark
    mbpp_evals = {"evaluate_reference@mbpp", "evaluate@dpo-mbpp", "evaluate@target_dpo-mbpp"}
    assert stale_after_edit(root, env, "data/benchmarks/mbpp/.gitkeep") == {"synthesize"} | mbpp_evals
    mine = root / "data/benchmarks/mbpp/mine.jsonl"  # a file a parameter names must exist at composition
    mine.write_text("{}\n")
    assert stale_with(root, env, [*CHEAP, "eval.data.mbpp=data/benchmarks/mbpp/mine.jsonl"]) == {
        "synthesize"} | mbpp_evals
    mine.unlink()
    # a third benchmark: its own new stages only, no existing evaluation
    assert stale_with(root, env, [*CHEAP, "eval.benchmarks=[humaneval,mbpp,humaneval_plus]"]) == {
        "evaluate_reference@humaneval_plus", "evaluate@dpo-humaneval_plus", "evaluate@target_dpo-humaneval_plus",
        "report"}
    seed = root / "data/seed/problems.jsonl"
    seed.write_text(seed.read_text() + "\n")
    assert "synthesize" in changed_stages(root, env)
    sh(["git", "checkout", "--", "data/seed/problems.jsonl"], root, env)
    assert (root / "params.yaml").read_text() == P.dump(smoke) and changed_stages(root, env) == set()

    # A training parameter of every variant: both variants' train and probe, and the report (the
    # evaluations read the trained models, so they follow once those change, as below for one variant).
    assert stale_with(root, env, [*CHEAP, "train.common.learning_rate=2e-4"]) == {
        "train@dpo", "train@target_dpo", "probe@dpo", "probe@target_dpo", "report"}

    # One variant's: that variant's train and probe, and the report. (Its evaluations follow when
    # its model changes: test_remote's sweep runs such a change and asserts exactly these re-run.)
    assert stale_with(root, env, [*CHEAP, "+train.variants.dpo.learning_rate=2e-4"]) == {
        "train@dpo", "probe@dpo", "report"}
