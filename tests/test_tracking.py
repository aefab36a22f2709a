"""W&B: offline unless a key is configured; evaluations land as runs of their own."""

import json

from iterpref import tracking

PARAMS = {"experiment_name": "unit", "logging": {"wandb": {"mode": "auto", "project": "iterpref-test",
                                                          "entity": None, "group": None}}}


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
    tracking.log_eval(params, "dpo", {"benchmark": "humaneval", "pass@1": 0.5, "generation": {}, "per_task": []})
    assert not (tmp_path / "wandb").exists()


def test_log_eval_writes_an_offline_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_GROUP", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    report = {"benchmark": "humaneval", "pass@1": 0.5, "generation": {"sampling": {"temperature": 0.0}},
              "error_types": {"NameError": 1},
              "per_task": [{"task_id": "HumanEval/0", "passed": True, "status": "pass", "error_type": None,
                            "reply": "x"},
                           {"task_id": "HumanEval/1", "passed": False, "status": "fail", "error_type": "NameError",
                            "reply": "y"}]}
    tracking.log_eval(PARAMS, "target_dpo", report)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the run's data file should exist"
