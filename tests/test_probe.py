"""The held-out probe (iterpref.probe, stages/probe.py) and the split that feeds it (pairs.build).

Real parts: TRL's tokenisation and collator inside `FocalDPOTrainer`, the tiny random Llama,
real TRL training steps for the variant whose D- tokens must move. Which tokens belong to which
group is checked against the decoded pieces of TRL's own ids (tests/test_training.py's helpers),
not against the probe's own masks.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
from test_training import ALL, BY_ID, END_OF_TURN, expected_mask, load_tiny, token_pieces
from test_tracking import offline  # noqa: F401  (a fixture)

import processes
from iterpref import params as P
from iterpref import probe, tracking
from iterpref.pairs.build import PairConfig, make_pair, split_by_problem
from iterpref.records import Attempt, Outcome, Pair, Problem, Trajectory, write_jsonl
from iterpref.tracking import wandb_runs
from iterpref.training import recipe
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CFG = TrainConfig(bf16=False)


# --------------------------------------------------------------------------- the split

def pairs_over(tasks: int, per_task: int = 2) -> list[Pair]:
    return [Pair(f"t{t}#{k}", f"t/{t}", "p", "c", "r", rejected_spans=[], chosen_spans=[], chosen_round=1,
                 rejected_round=0) for t in range(tasks) for k in range(per_task)]


def test_split_holds_out_whole_problems_deterministically():
    pairs = pairs_over(67)
    training, heldout = split_by_problem(pairs, 0.2, seed=0)
    held_tasks = {p.task_id for p in heldout}
    assert not held_tasks & {p.task_id for p in training}
    assert len(held_tasks) == round(0.2 * 67) == 13 and len(heldout) == 26
    assert sorted(training + heldout, key=pairs.index) == pairs
    assert [p.pair_id for p in training] == [p.pair_id for p in pairs if p.task_id not in held_tasks]  # input order
    shuffled = random.Random(1).sample(pairs, len(pairs))
    assert {p.task_id for p in split_by_problem(shuffled, 0.2, seed=0)[1]} == held_tasks  # any input order
    assert {p.task_id for p in split_by_problem(pairs, 0.2, seed=1)[1]} != held_tasks  # the seed draws
    assert split_by_problem(pairs, 0.0, seed=0) == (pairs, [])


@pytest.mark.parametrize("tasks, fraction, held", [(1, 0.5, 0), (2, 0.01, 1), (3, 0.99, 2), (8, 0.2, 2)])
def test_split_keeps_one_problem_each_way(tasks, fraction, held):
    training, heldout = split_by_problem(pairs_over(tasks), fraction, seed=0)
    assert len({p.task_id for p in heldout}) == held
    assert len({p.task_id for p in training}) == tasks - held


# --------------------------------------------------------------------------- token groups

def test_token_groups_on_hand_made_pairs(tiny_model_dir):
    """Chosen: every chosen completion token; D-: the rejected tokens that touch a D- line (the
    documented mask rule, on pieces decoded from TRL's ids); shared: every other rejected token."""
    model, tok = load_tiny(tiny_model_dir)
    trainer = probe.probe_trainer(model, load_tiny(tiny_model_dir)[0], tok, ALL, CFG, use_cpu=True)
    rows = list(trainer.train_dataset)
    whole, groups = probe.group_masks(trainer.data_collator, rows)
    targets = whole["input_ids"][:, 1:]
    n = len(rows)
    for k, row in enumerate(rows):
        p = BY_ID[row["pair_id"]]
        prompt = [{"role": "user", "content": p.prompt}]
        pieces, ranges = token_pieces(tok, prompt + [{"role": "assistant", "content": p.rejected}], row["rejected_ids"])
        in_d_minus = expected_mask(ranges, p.rejected_spans)
        error = targets[n + k][groups["rejected_error"][k]].tolist()
        shared = targets[n + k][groups["rejected_shared"][k]].tolist()
        assert error == [i for i, m in zip(row["rejected_ids"], in_d_minus) if m]
        assert shared == [i for i, m in zip(row["rejected_ids"], in_d_minus) if not m]
        chosen = targets[k][groups["chosen"][k]].tolist()
        assert chosen == row["chosen_ids"] and tok.decode(chosen).endswith(p.chosen + END_OF_TURN)
    # read back: D- of one_line is its changed line, nothing of the lines around it
    k = [r["pair_id"] for r in rows].index("one_line")
    error_text = tok.decode(targets[n + k][groups["rejected_error"][k]])
    assert "out.append(x - 1)" in error_text and "def" not in error_text and "return" not in error_text
    k = [r["pair_id"] for r in rows].index("insert_only")
    assert not groups["rejected_error"][k].any() and groups["rejected_shared"][k].sum() == len(rows[k]["rejected_ids"])


def test_every_shift_is_zero_when_the_policy_is_the_reference(tiny_model_dir):
    sums = probe.pair_sums(tiny_model_dir, tiny_model_dir, ALL, CFG, use_cpu=True)
    assert [s["pair_id"] for s in sums] == [p.pair_id for p in ALL]
    assert all(s[f"{g}_sum"] == 0.0 for s in sums for g in probe.GROUPS)
    assert all(s["chosen_tokens"] > 0 and s["rejected_shared_tokens"] > 0 for s in sums)
    report = probe.summarise(sums, beta=0.1)
    for key in (*probe.GROUPS, "focal_margin", "reward_margin"):
        assert report[key]["mean"] == 0.0 and report[key]["ci"] == [0.0, 0.0], key
    assert report["accuracy"]["mean"] == 0.0  # a zero margin prefers neither side
    assert report["rejected_error"]["pairs"] == len(ALL) - 1  # insert_only has no D- token
    assert report["chosen"]["pairs"] == report["pairs"] == len(ALL)


def test_interval_contains_the_mean_and_is_seeded():
    rng = random.Random(0)
    for n in (1, 2, 5, 30, 200):
        for draw in (lambda: rng.gauss(-0.3, 1.0), lambda: rng.expovariate(3.0), lambda: float(rng.random() < 0.2)):
            values = [draw() for _ in range(n)]
            b = probe.bootstrap(values)
            lo, hi = b["ci"]
            assert lo <= b["mean"] <= hi and b["pairs"] == n
            assert b == probe.bootstrap(values)
    assert probe.bootstrap([2.5])["ci"] == [2.5, 2.5]
    assert probe.bootstrap([]) is None
    narrow, wide = probe.bootstrap([0.0, 1.0] * 50)["ci"], probe.bootstrap([0.0, 1.0] * 5)["ci"]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_summarise_per_pair_values():
    sums = [{"pair_id": "a", "task_id": "t/a", "chosen_tokens": 4, "chosen_sum": 2.0, "rejected_error_tokens": 2,
             "rejected_error_sum": -3.0, "rejected_shared_tokens": 5, "rejected_shared_sum": -1.0},
            {"pair_id": "b", "task_id": "t/b", "chosen_tokens": 2, "chosen_sum": -4.0, "rejected_error_tokens": 0,
             "rejected_error_sum": 0.0, "rejected_shared_tokens": 3, "rejected_shared_sum": 3.0}]
    report = probe.summarise(sums, beta=0.5)
    a, b = report["per_pair"]
    assert (a["chosen_shift"], a["rejected_error_shift"], a["rejected_shared_shift"]) == (0.5, -1.5, -0.2)
    assert a["focal_margin"] == pytest.approx(1.3) and a["reward_margin"] == 0.5 * (2.0 + 3.0 + 1.0)
    assert b["rejected_error_shift"] is None and b["focal_margin"] is None and b["reward_margin"] == -3.5
    assert report["chosen"]["mean"] == pytest.approx((0.5 - 2.0) / 2)
    assert report["focal_margin"]["pairs"] == 1 and report["accuracy"]["mean"] == 0.5


# --------------------------------------------------------------------------- trained variants

# (rejected, chosen): the fix replaces a block of several lines with one line, so D- holds tokens the
# chosen side does not share; on the one-line edits above, raising the chosen completion also raises
# its near-copy in D-, and only the margins move.
FOCAL = {
    "t/raise": ("def f(x):\n    raise NotImplementedError('todo')\n    print('unreachable', x)\n"
                "    y = [i ** 3 for i in range(99)]\n    return y\n", "def f(x):\n    return x\n"),
    "t/assert": ("def g(xs):\n    assert False, 'unsupported input'\n    while True:\n        continue\n"
                 "    return None\n", "def g(xs):\n    return xs\n"),
}


def focal_pairs() -> list[Pair]:
    """The `FOCAL` fixes as the pairs stage builds them (v0 fails, v1 passes)."""
    failed, passed = Outcome(passed=False, status="failed", error_type="NotImplementedError"), Outcome(True, "passed")
    pairs = []
    for task_id, (rejected, chosen) in FOCAL.items():
        problem = Problem(task_id, "Do it.", rejected.splitlines()[0], "f", chosen, "import unittest\n")
        traj = Trajectory(f"{task_id}#0", task_id, "test", 0, [Attempt(0, rejected, failed), Attempt(1, chosen, passed)],
                          solved=True)
        pairs.append(make_pair(problem, traj, traj.attempts[0], PairConfig()))
    return pairs


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """The tiny model after four real TRL steps on `focal_pairs`: Target-DPO and plain DPO."""
    tmp = tmp_path_factory.mktemp("probe_train")
    write_jsonl(tmp / "pairs.jsonl", focal_pairs())
    out = {}
    for variant, mode in (("target_dpo", "line"), ("dpo", "none")):
        cfg = TrainConfig(loss="dpo", mask=MaskConfig(mode=mode), max_steps=4, per_device_batch_size=2,
                          learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, bf16=False, seed=0)
        recipe.train(cfg, tiny_model_dir, tmp / "pairs.jsonl", tmp / variant, run_name=variant,
                     cache_root=tmp / "cache", report_to=[], use_cpu=True)
        out[variant] = tmp / variant
    return out


def test_target_dpo_on_a_pairs_rejected_side_moves_its_d_minus_tokens_down(tiny_model_dir, trained):
    pairs = focal_pairs()
    assert all(p.rejected_spans for p in pairs)
    focal, plain = (probe.summarise(probe.pair_sums(trained[v], tiny_model_dir, pairs, CFG, use_cpu=True), beta=0.1)
                    for v in ("target_dpo", "dpo"))
    assert all(r["rejected_error_shift"] < 0 for r in focal["per_pair"])
    assert focal["rejected_error"]["ci"][1] < 0 and focal["focal_margin"]["ci"][0] > 0
    assert focal["accuracy"]["mean"] == 1.0
    # plain DPO pushes the whole rejected side down, the lines the fix kept included
    assert plain["rejected_shared"]["ci"][1] < 0 < focal["rejected_shared"]["mean"]


def test_probe_stage_writes_its_report(tiny_model_dir, trained, tmp_path):
    """stages/probe.py in a run folder: params.yaml, the two models, the held-out pairs."""
    params = P.compose(["experiment=smoke", "logging=disabled", "runtime.threads=1"])
    (tmp_path / "params.yaml").write_text(P.dump(params))
    shutil.copytree(tiny_model_dir, tmp_path / "models/student")
    shutil.copytree(trained["target_dpo"], tmp_path / "models/trained/target_dpo")
    write_jsonl(tmp_path / "data/pairs_heldout.jsonl", [*focal_pairs(), BY_ID["insert_only"]])
    processes.run([sys.executable, str(ROOT / "stages/probe.py"), "target_dpo"], cwd=tmp_path, check=True,
                   capture_output=True)
    report = json.loads((tmp_path / "reports/probe/target_dpo.json").read_text())
    assert report["variant"] == "target_dpo" and report["pairs"] == report["heldout_pairs"] == 3
    assert report["beta"] == params["train"]["common"]["beta"]
    assert report["rejected_error"]["mean"] < 0 and report["runtime_s"] > 0 and report["peak_rss_gib"] > 0
    bad = processes.run([sys.executable, str(ROOT / "stages/probe.py"), "nope"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "train.variants has no 'nope'" in bad.stderr


def test_probe_is_logged_to_wandb(offline):  # noqa: F811
    report = probe.summarise([{"pair_id": "a", "task_id": "t/a", "chosen_tokens": 2, "chosen_sum": 1.0,
                               "rejected_error_tokens": 1, "rejected_error_sum": -2.0, "rejected_shared_tokens": 1,
                               "rejected_shared_sum": 0.5}], beta=0.1)
    params = {"experiment_name": "unit",
              "logging": {"wandb": {"mode": "offline", "project": "iterpref-test", "entity": None, "group": None}}}
    tracking.log_probe(params, "target_dpo", report)
    [run] = wandb_runs.offline_runs(offline / "wandb", wait_s=30)
    assert (run.group, run.name, run.job_type) == ("unit", "target_dpo-probe", "probe")
    assert run.summary["probe/focal_margin"] == pytest.approx(2.5) and run.summary["probe/pairs"] == 1
    assert run.summary["probe/rejected_error_lo"] == run.summary["probe/rejected_error_hi"] == -2.0
    table = wandb_runs.table(run, "probe/per_pair")
    assert table["columns"][0] == "pair_id" and table["data"][0][0] == "a"
