"""W&B: offline unless a key is configured; every stage is a run, grouped by experiment and named
by variant. The offline run files are read back (iterpref.tracking.wandb_runs) and a W&B report comparing
them is built offline (iterpref.reporting.wandb_report)."""

import json

import processes
import pytest

from iterpref import tracking
from iterpref.reporting import wandb_report
from iterpref.tracking import wandb_runs

PARAMS = {"experiment_name": "unit", "train": {"common": {"beta": 0.1}},
          "logging": {"wandb": {"mode": "auto", "project": "iterpref-test", "entity": None, "group": None}}}


def eval_report(bench: str, passed: list[bool]) -> dict:
    return {"benchmark": bench, "pass@1": sum(passed) / len(passed), "passed": sum(passed), "tasks": len(passed),
            "generation": {"sampling": {"temperature": 0.0}},
            "error_types": {"NameError": passed.count(False)} if not all(passed) else {},
            "per_task": [{"task_id": f"{bench}/{i}", "passed": p, "status": "pass" if p else "fail",
                          "error_type": None if p else "NameError", "reply": f"reply {i}"}
                         for i, p in enumerate(passed)]}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A W&B-offline process environment in a fresh git repository, no key, no DVC variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_RUN_GROUP", "WANDB_PROJECT", "DVC_EXP_NAME",
                "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    processes.run(git + ["init", "-q"], check=True)
    processes.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], check=True)
    return tmp_path


def test_auto_mode_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking.wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.wandb_mode("auto") == "online"
    assert tracking.wandb_mode("disabled") == "disabled"


def test_disabled_logs_nothing(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    params = json.loads(json.dumps(PARAMS))
    params["logging"]["wandb"]["mode"] = "disabled"
    assert tracking.wandb_env(params) == []
    with tracking.stage_run(params, "train", "dpo") as run:
        assert run is None
    tracking.log_eval(params, "dpo", eval_report("humaneval", [True]))
    assert not (tmp_path / "wandb").exists()


def test_eval_run_outside_dvc_is_grouped_by_experiment_name(offline):
    commit = processes.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    tracking.log_eval(PARAMS, "target_dpo", eval_report("humaneval", [True, False]))
    [run] = wandb_runs.offline_runs(offline / "wandb", wait_s=30)
    assert (run.group, run.name, run.job_type, run.project) == ("unit", "target_dpo-humaneval", "eval", "iterpref-test")
    assert run.config["git_commit"] == commit and run.config["dvc_experiment"] is None
    assert run.config["params"] == PARAMS and run.config["variant"] == "target_dpo"
    assert run.summary["humaneval/pass@1"] == 0.5 and run.summary["humaneval/errors/NameError"] == 1
    table = wandb_runs.table(run, "humaneval/per_task")
    assert table["columns"][:2] == ["task_id", "passed"]
    assert [row[:2] for row in table["data"]] == [["humaneval/0", True], ["humaneval/1", False]]


def test_runs_inside_a_dvc_experiment_land_in_the_repository(offline, monkeypatch):
    """`dvc exp run --queue/--temp` runs a stage in a temporary workspace with DVC_EXP_NAME,
    DVC_EXP_BASELINE_REV and DVC_ROOT (the repository) set: the run is grouped by the DVC
    experiment, records the baseline commit, and is written under the repository's wandb/."""
    repo, workspace = offline / "repo", offline / "repo/.dvc/tmp/exps/tmp123"
    workspace.mkdir(parents=True)
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DVC_EXP_NAME", "beta-0.05")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    with tracking.stage_run(PARAMS, "train", "dpo", variant="dpo") as run:
        for step, loss in enumerate([0.69, 0.5, 0.4], start=1):
            run.log({"train/loss": loss, "train/global_step": step})
        tracking.log_train(run, {"pairs": 4, "steps": 3, "train_loss": 0.53, "rewards/margins": None})
    assert not (workspace / "wandb").exists()
    [run] = wandb_runs.offline_runs(repo / "wandb", wait_s=30)
    assert (run.group, run.name, run.job_type) == ("beta-0.05", "dpo", "train")
    assert run.config["dvc_experiment"] == "beta-0.05" and run.config["git_commit"] == "a" * 40
    assert [h["train/loss"] for h in run.history] == [0.69, 0.5, 0.4]
    assert run.summary["final/steps"] == 3 and "final/rewards/margins" not in run.summary


def test_wandb_report_definition_compares_every_experiment(offline, monkeypatch):
    """Two experiments that differ in beta: the report has one pass@1 bar chart per benchmark
    grouped by experiment and variant, the training curves, and beta as a parallel axis."""
    for group, beta in (("beta-0.05", 0.05), ("beta-0.1", 0.1)):
        monkeypatch.setenv("DVC_EXP_NAME", group)
        params = json.loads(json.dumps(PARAMS))
        params["train"]["common"]["beta"] = beta
        for bench in ("humaneval", "mbpp"):
            tracking.log_eval(params, "dpo", eval_report(bench, [True, beta > 0.06]))
    c = wandb_report.contents(wandb_runs.offline_runs(offline / "wandb", wait_s=30))
    assert c.groups == ["beta-0.05", "beta-0.1"] and c.variants == ["dpo"]
    assert c.benchmarks == ["humaneval", "mbpp"] and c.swept == ["params.train.common.beta"]
    spec = wandb_report.definition(wandb_report.build(c, "team", "iterpref-test", link_runsets=False))
    assert spec["project"] == {"name": "iterpref-test", "entityName": "team"}
    text = json.dumps(spec)
    for needle in ("humaneval/pass@1", "mbpp/pass@1", "train/loss", "train/rewards/margins", "params.train.common.beta"):
        assert needle in text, needle
    grids = [b for b in spec["spec"]["blocks"] if b.get("type") == "panel-grid"]
    assert len(grids) == 4
    runset = grids[0]["metadata"]["runSets"][0]
    assert "beta-0.05" in json.dumps(runset["filters"]) and "beta-0.1" in json.dumps(runset["filters"])
    assert [k["name"] for k in runset["grouping"]] == ["group", "variant.value"]
    # the sweep table: evaluation runs grouped by experiment, the swept key and pass@1 as columns
    table = grids[3]["metadata"]["runSets"][0]
    assert [k["name"] for k in table["grouping"]] == ["group"]
    assert "config:params.train.common.beta.value" in json.dumps(table) and "summary:mbpp/pass@1" in json.dumps(table)
    with pytest.raises(ValueError, match="no W&B runs in groups nope"):
        wandb_report.contents(wandb_runs.offline_runs(offline / "wandb", wait_s=30), ["nope"])
