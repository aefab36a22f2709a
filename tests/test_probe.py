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

import processes
import pytest
from test_tracking import offline  # noqa: F401  (a fixture)
from test_training import ALL, BY_ID, END_OF_TURN, expected_mask, load_tiny, token_pieces

from iterpref import params as P
from iterpref import probe, tracking
from iterpref.pairs.build import PairConfig, make_pair, split_by_problem
from iterpref.probe import positions, reference
from iterpref.records import Attempt, Outcome, Pair, Problem, Trajectory, write_jsonl
from iterpref.tracking import wandb_runs
from iterpref.training import logprobs, recipe, record
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

def expected_groups(tok, row, pair) -> dict[str, list[int]]:
    """The six groups by the documented rule, on pieces decoded from TRL's ids: a token that starts
    before the first changed character of either side (the sides share that text) is prefix; of
    the others, those touching a changed line are D+ / D-, the rest suffix."""
    boundary = min([s for s, _ in pair.chosen_spans + pair.rejected_spans], default=float("inf"))
    prompt = [{"role": "user", "content": pair.prompt}]
    out = {}
    for side, code, spans in (("chosen", pair.chosen, pair.chosen_spans), ("rejected", pair.rejected, pair.rejected_spans)):
        _, ranges = token_pieces(tok, prompt + [{"role": "assistant", "content": code}], row[f"{side}_ids"])
        changed = expected_mask(ranges, spans)
        prefix, middle, suffix = probe.SIDES[side]
        out[prefix] = [int(a < boundary) for a, _ in ranges]
        out[middle] = [int(c and a >= boundary) for c, (a, _) in zip(changed, ranges)]
        out[suffix] = [int(not c and a >= boundary) for c, (a, _) in zip(changed, ranges)]
    return out


def test_position_groups_on_hand_made_pairs(tiny_model_dir):
    """Each group holds exactly the tokens the documented rule puts there, on TRL's own ids; the
    chosen and rejected prefixes are the same tokens; D- of one_line is its changed line and
    nothing around it."""
    model, tok = load_tiny(tiny_model_dir)
    trainer = probe.probe_trainer(model, load_tiny(tiny_model_dir)[0], tok, ALL, CFG, use_cpu=True)
    rows = {r["pair_id"]: r for r in trainer.train_dataset}
    groups = {pid: positions.position_masks(row, tok) for pid, row in rows.items()}
    for pid, row in rows.items():
        assert groups[pid] == expected_groups(tok, row, BY_ID[pid]), pid
        for side in probe.SIDES:  # a partition of the side's tokens
            assert [sum(m) for m in zip(*(groups[pid][g] for g in probe.SIDES[side]))] == [1] * len(row[f"{side}_ids"])
        prefix = [[i for i, m in zip(row[f"{side}_ids"], groups[pid][f"{side}_prefix"]) if m] for side in probe.SIDES]
        assert prefix[0] == prefix[1], pid

    def text(pid, group):
        side = "rejected" if group.startswith("rejected") else "chosen"
        return tok.decode([i for i, m in zip(rows[pid][f"{side}_ids"], groups[pid][group]) if m])

    assert "out.append(x - 1)" in text("one_line", "rejected_error") and "def" not in text("one_line", "rejected_error")
    assert "out.append(x + 1)" in text("one_line", "chosen_fix")
    assert "def inc_all" in text("one_line", "rejected_prefix") and "return out" in text("one_line", "rejected_suffix")
    assert "return" not in text("one_line", "rejected_prefix") and "def" not in text("one_line", "rejected_suffix")
    # no D-: the rejected side splits where D+ begins
    assert not any(groups["insert_only"]["rejected_error"])
    assert "y = x" in text("insert_only", "rejected_prefix") and "return y" in text("insert_only", "rejected_suffix")


def test_every_shift_is_zero_when_the_policy_is_the_reference(tiny_model_dir):
    sums, tokens = probe.pair_sums(tiny_model_dir, tiny_model_dir, ALL, CFG, use_cpu=True,
                                   detail=frozenset({"one_line"}))
    assert [s["pair_id"] for s in sums] == [p.pair_id for p in ALL]
    assert all(s[f"{g}_sum"] == 0.0 for s in sums for g in probe.GROUPS)
    assert all(s["chosen_prefix_tokens"] > 0 and s["rejected_suffix_tokens"] > 0 for s in sums)
    report = probe.summarise(sums, beta=0.1)
    for key in (*probe.SHIFTS, "focal_margin", "reward_margin"):
        assert report[key]["mean"] == 0.0 and report[key]["ci"] == [0.0, 0.0], key
    assert report["accuracy"]["mean"] == 0.0  # a zero margin prefers neither side
    assert report["rejected_error"]["pairs"] == len(ALL) - 1  # insert_only has no D- token
    assert report["chosen"]["pairs"] == report["pairs"] == len(ALL)
    # the per-token detail: every completion token in order, its text reading back the completion
    assert list(tokens) == ["one_line"]
    for side, code in (("chosen", BY_ID["one_line"].chosen), ("rejected", BY_ID["one_line"].rejected)):
        detail = tokens["one_line"][side]
        assert "".join(t[0] for t in detail) == code + END_OF_TURN
        assert {t[1] for t in detail} == {0.0} and {t[2] for t in detail} <= set(probe.SIDES[side])
        assert len(detail) == sum(next(s for s in sums if s["pair_id"] == "one_line")[f"{g}_tokens"]
                                  for g in probe.SIDES[side])


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


def sums_row(pair_id: str, **groups: tuple[int, float]) -> dict:
    """A `pair_sums` row: ``group=(tokens, sum)`` for the groups given, nothing in the others."""
    row = {"pair_id": pair_id, "task_id": f"t/{pair_id}"}
    for g in probe.GROUPS:
        row[f"{g}_tokens"], row[f"{g}_sum"] = groups.get(g, (0, 0.0))
    return row


def test_summarise_per_pair_values():
    sums = [sums_row("a", chosen_prefix=(1, 1.0), chosen_fix=(1, 2.0), chosen_suffix=(2, -1.0),
                     rejected_prefix=(1, 1.0), rejected_error=(2, -3.0), rejected_suffix=(4, -2.0)),
            sums_row("b", chosen_prefix=(2, -4.0), rejected_suffix=(3, 3.0))]
    report = probe.summarise(sums, beta=0.5)
    a, b = report["per_pair"]
    assert (a["chosen_shift"], a["rejected_error_shift"], a["rejected_shared_shift"]) == (0.5, -1.5, -0.2)
    assert (a["chosen_fix_shift"], a["chosen_suffix_shift"], a["rejected_suffix_shift"]) == (2.0, -0.5, -0.5)
    assert b["chosen_fix_shift"] is None and report["chosen_fix"]["pairs"] == 1
    assert report["rejected_prefix"]["mean"] == 1.0 and report["rejected_suffix"]["mean"] == pytest.approx(0.25)
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


def heldout_pairs() -> list[Pair]:
    """The held-out pairs of the stage test: one with no D- line, and the focal pairs again."""
    return [BY_ID["insert_only"], *focal_pairs()]


def focal_config(mode: str, probe_points: int = 0) -> TrainConfig:
    """Four steps of 2 pairs at a high constant rate: the tiny model's D- tokens move."""
    return TrainConfig(loss="dpo", mask=MaskConfig(mode=mode), max_steps=4, per_device_batch_size=2,
                       learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, bf16=False, seed=0,
                       probe_points=probe_points)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """The tiny model after four real TRL steps on `focal_pairs`: Target-DPO, recording the probe's
    log-probs at every step (on `heldout_pairs` and the training pairs), and plain DPO at 2 evenly
    spaced steps. ``pairs`` / ``heldout``: the pair files."""
    tmp = tmp_path_factory.mktemp("probe_train")
    write_jsonl(tmp / "pairs.jsonl", focal_pairs())
    write_jsonl(tmp / "heldout.jsonl", heldout_pairs())
    out = {"pairs": tmp / "pairs.jsonl", "heldout": tmp / "heldout.jsonl"}
    for variant, mode, points in (("target_dpo", "line", -1), ("dpo", "none", 2)):
        out[f"{variant}_metrics"] = recipe.train(focal_config(mode, points), tiny_model_dir, tmp / "pairs.jsonl",
                                                 tmp / variant, run_name=variant, cache_root=tmp / "cache",
                                                 report_to=[], use_cpu=True, heldout_path=tmp / "heldout.jsonl")
        out[variant] = tmp / variant
    return out


def test_target_dpo_on_a_pairs_rejected_side_moves_its_d_minus_tokens_down(tiny_model_dir, trained):
    pairs = focal_pairs()
    assert all(p.rejected_spans for p in pairs)
    focal, plain = (probe.summarise(probe.pair_sums(trained[v], tiny_model_dir, pairs, CFG, use_cpu=True)[0],
                                    beta=0.1) for v in ("target_dpo", "dpo"))
    assert all(r["rejected_error_shift"] < 0 for r in focal["per_pair"])
    assert focal["rejected_error"]["ci"][1] < 0 and focal["focal_margin"]["ci"][0] > 0
    assert focal["accuracy"]["mean"] == 1.0
    # plain DPO pushes the whole rejected side down, the lines the fix kept included
    assert plain["rejected_shared"]["ci"][1] < 0 < focal["rejected_shared"]["mean"]
    # the shared prefix is the same tokens after the same context on both sides: the same shift
    for report in (focal, plain):
        assert all(r["chosen_prefix_shift"] == pytest.approx(r["rejected_prefix_shift"], abs=1e-5)
                   for r in report["per_pair"])
    # Target-DPO drops the rejected prefix from the loss, so the chosen one's push is not cancelled
    assert focal["chosen_prefix"]["mean"] > 0


def test_shared_reference_log_probs_give_the_same_sums(tiny_model_dir, trained, tmp_path):
    """The reference's log-probs computed once (iterpref.probe.reference) and read back give the
    sums the probe gets running the reference itself; a file of other settings or pairs is not used."""
    pairs = focal_pairs()
    path = tmp_path / "reference.pt"
    logprobs.save(path, reference.compute(tiny_model_dir, pairs, CFG, use_cpu=True), CFG)
    stored = logprobs.load(path, pairs, CFG)
    live, shared = (probe.pair_sums(trained["dpo"], tiny_model_dir, pairs, CFG, use_cpu=True, reference=lp)[0]
                    for lp in (None, stored))
    assert shared == live and any(s["rejected_error_sum"] != 0 for s in live)
    assert logprobs.load(path, [*pairs, BY_ID["one_line"]], CFG) is None  # a pair it lacks
    assert logprobs.load(path, pairs, TrainConfig(bf16=False, max_length=512)) is None  # another cut
    assert logprobs.load(tmp_path / "absent.pt", pairs, CFG) is None


@pytest.mark.parametrize("mode", ["none", "line", "symmetric"])
def test_training_precompute_from_the_shared_file_equals_trls(tiny_model_dir, mode):
    """The reference sums training takes from the shared file equal, bit for bit, those TRL's own
    precompute gets running the reference: every case pair, batches of 3 (padding differs between
    batches), cut at 96 tokens (some completions lose their end)."""
    import tempfile

    from iterpref.training.trainer import FocalDPOTrainer

    cfg = TrainConfig(mask=MaskConfig(mode=mode), per_device_batch_size=3, max_length=96, bf16=False)
    shared = reference.compute(tiny_model_dir, ALL, cfg, use_cpu=True)
    columns = {}
    for source in (None, shared):
        model, tok = load_tiny(tiny_model_dir)
        with tempfile.TemporaryDirectory() as out:
            data = FocalDPOTrainer(model=model, args=recipe.dpo_config(cfg, Path(out), "t", [], use_cpu=True),
                                   train_dataset=recipe.pairs_dataset(ALL), processing_class=tok, mask=cfg.mask,
                                   reference_log_probs=source).train_dataset
        columns[source is None] = (data["pair_id"], data["ref_chosen_logps"], data["ref_rejected_logps"])
    assert columns[True] == columns[False]
    assert len(columns[True][0]) == len(ALL) and len(set(columns[True][2])) > 1


def test_training_on_the_shared_reference_writes_the_same_weights(tiny_model_dir, trained, tmp_path):
    """`recipe.train` given the `reference_logprobs` stage's file sums it instead of running the
    reference, and writes the weights of the run that ran it (the fixture's), bit for bit."""
    from safetensors.torch import load_file

    cfg = focal_config("line")
    path = tmp_path / "training.pt"
    logprobs.save(path, reference.compute(tiny_model_dir, focal_pairs(), cfg, use_cpu=True), cfg)
    metrics = recipe.train(cfg, tiny_model_dir, trained["pairs"], tmp_path / "shared", run_name="shared",
                           cache_root=tmp_path / "cache", report_to=[], use_cpu=True, reference_path=path)
    assert metrics["shared_reference"] and not trained["target_dpo_metrics"]["shared_reference"]
    ran, shared = (load_file(d / "model.safetensors") for d in (trained["target_dpo"], tmp_path / "shared"))
    assert ran.keys() == shared.keys() and all(ran[k].equal(shared[k]) for k in ran)


@pytest.mark.parametrize("points, total, steps", [(-1, 4, [1, 2, 3, 4]), (4, 4, [1, 2, 3, 4]), (9, 3, [1, 2, 3]),
                                                 (2, 4, [2, 4]), (4, 25, [7, 13, 19, 25]), (1, 5, [5]), (0, 5, [])])
def test_recorded_steps_are_evenly_spaced_and_end_on_the_last(points, total, steps):
    assert record.record_steps(points, total) == steps


def test_the_curve_along_training_ends_on_the_final_probe(tiny_model_dir, trained):
    """The log-probs the trainer recorded at its last step give the probe's numbers on the saved
    weights, pair by pair, held out and in sample; step 0 is the reference (every shift 0); the
    steps between move, and in sample Target-DPO's D- tokens go down as training goes on."""
    stored = record.load(trained["target_dpo"] / record.FILE)
    recorded = stored["steps"]
    assert sorted(recorded) == [1, 2, 3, 4] and sorted(trained["target_dpo_metrics"]["recorded_steps_s"]) == list("1234")
    assert sorted(record.load(trained["dpo"] / record.FILE)["steps"]) == [2, 4]
    cfg = focal_config("line")  # the variant's config, as the probe stage reads it
    assert stored["settings"] == {"max_length": 1024, "bf16": False, "per_device_batch_size": 2}
    for name, pairs in (("heldout", heldout_pairs()), ("training", focal_pairs())):
        steps = probe.step_sums({s: r[name] for s, r in recorded.items()}, tiny_model_dir, pairs, cfg, use_cpu=True)
        assert sorted(steps) == [0, 1, 2, 3, 4]
        final = probe.pair_sums(trained["target_dpo"], tiny_model_dir, pairs, cfg, use_cpu=True)[0]
        # the last step's record stands for the trained model: the same rows without running it
        assert probe.pair_sums(tiny_model_dir, tiny_model_dir, pairs, cfg, use_cpu=True, policy=recorded[4][name])[0] == final
        assert steps[4] == final, name
        assert all(row[f"{g}_sum"] == 0.0 for row in steps[0] for g in probe.GROUPS)
        assert steps[1] != steps[2] != steps[3] != steps[4]
    curve = probe.along_training(steps, "training", beta=0.1)
    d_minus = {r["step"]: r["mean"] for r in curve if r["group"] == "rejected_error"}
    assert d_minus[0] == 0.0 and d_minus[4] < d_minus[1] < 0
    final_report = probe.summarise(final, beta=0.1)
    last = {r["group"]: r for r in curve if r["step"] == 4}
    assert set(last) == set(probe.GROUPS)
    for group, row in last.items():
        assert (row["mean"], [row["lo"], row["hi"]], row["pairs"]) == (
            final_report[group]["mean"], final_report[group]["ci"], final_report[group]["pairs"]), group


def test_recording_leaves_training_unchanged(tiny_model_dir, trained, tmp_path):
    """The same run without the recorder writes the same weights, bit for bit, and no record."""
    from safetensors.torch import load_file

    recipe.train(focal_config("line"), tiny_model_dir, trained["pairs"], tmp_path / "plain", run_name="plain",
                 cache_root=tmp_path / "cache", report_to=[], use_cpu=True, heldout_path=trained["heldout"])
    with_record, without = (load_file(d / "model.safetensors") for d in (trained["target_dpo"], tmp_path / "plain"))
    assert with_record.keys() == without.keys() and all(with_record[k].equal(without[k]) for k in without)
    assert not (tmp_path / "plain" / record.FILE).exists()


def test_probe_stage_writes_its_report(tiny_model_dir, trained, tmp_path):
    """stages/probe.py in a run folder: params.yaml, the two models, the held-out pairs."""
    # the settings target_dpo trained under: the stage takes the record's last step as the trained model's
    params = P.compose(["experiment=smoke", "logging=disabled", "runtime.threads=1", "train.common.bf16=false",
                        "train.common.per_device_batch_size=2"])
    (tmp_path / "params.yaml").write_text(P.dump(params))
    shutil.copytree(tiny_model_dir, tmp_path / "models/student")
    shutil.copytree(trained["target_dpo"], tmp_path / "models/trained/target_dpo")
    write_jsonl(tmp_path / "data/pairs_heldout.jsonl", heldout_pairs())
    write_jsonl(tmp_path / "data/pairs.jsonl", focal_pairs())  # what the variant trained on
    for stage in (["reference_logprobs.py"], ["probe.py", "target_dpo"]):
        processes.run([sys.executable, str(ROOT / "stages" / stage[0]), *stage[1:]], cwd=tmp_path, check=True,
                      capture_output=True)
    report = json.loads((tmp_path / "reports/probe/target_dpo.json").read_text())
    assert report["shared_reference"] == {"heldout": True, "training": True}
    assert report["variant"] == "target_dpo" and report["pairs"] == report["heldout_pairs"] == 3
    assert report["in_sample"]["pairs"] == 2 and report["in_sample"]["rejected_error"]["mean"] < 0
    assert [r["pair_id"] for r in report["in_sample"]["per_pair"]] == [p.pair_id for p in focal_pairs()]
    assert list(report["tokens"]) == [p.pair_id for p in focal_pairs()]  # the held-out pairs with D- lines
    assert report["beta"] == params["train"]["common"]["beta"]
    assert report["rejected_error"]["mean"] < 0 and report["runtime_s"] > 0 and report["peak_rss_gib"] > 0
    # the curve the trainer recorded: steps 0 (the reference) to 4, each pair set, ending on the final probe
    assert report["recorded_policy"] == {"heldout": True, "training": True}
    curve = report["along_training"]
    assert {(r["split"], r["step"]) for r in curve} == {(s, k) for s in ("heldout", "training") for k in range(5)}
    assert all(r["mean"] == 0.0 for r in curve if r["step"] == 0)
    last = {(r["split"], r["group"]): r for r in curve if r["step"] == 4}
    for split, summary in (("heldout", report), ("training", report["in_sample"])):
        for group in probe.GROUPS:
            if summary[group]:
                assert last[split, group]["mean"] == summary[group]["mean"], (split, group)
                assert last[split, group]["pairs"] == summary[group]["pairs"]
    bad = processes.run([sys.executable, str(ROOT / "stages/probe.py"), "nope"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "train.variants has no 'nope'" in bad.stderr


def test_probe_is_logged_to_wandb(offline):  # noqa: F811
    report = probe.summarise([sums_row("a", chosen_fix=(2, 1.0), rejected_error=(1, -2.0), rejected_suffix=(1, 0.5))],
                             beta=0.1)
    report["along_training"] = probe.along_training({0: [sums_row("a", rejected_error=(1, 0.0))],
                                                     3: [sums_row("a", rejected_error=(1, -2.0))]}, "heldout", 0.1)
    params = {"experiment_name": "unit",
              "logging": {"wandb": {"mode": "offline", "project": "iterpref-test", "entity": None, "group": None}}}
    tracking.log_probe(params, "target_dpo", report)
    [run] = wandb_runs.offline_runs(offline / "wandb", wait_s=30)
    assert (run.group, run.name, run.job_type) == ("unit", "target_dpo-probe", "probe")
    assert run.summary["probe/focal_margin"] == pytest.approx(2.5) and run.summary["probe/pairs"] == 1
    assert run.summary["probe/rejected_error_lo"] == run.summary["probe/rejected_error_hi"] == -2.0
    table = wandb_runs.table(run, "probe/per_pair")
    assert table["columns"][0] == "pair_id" and table["data"][0][0] == "a"
    curve = wandb_runs.table(run, "probe/along_training")
    assert curve["columns"] == ["step", "split", "group", "mean", "lo", "hi", "pairs"]
    assert curve["data"] == [[0, "heldout", "rejected_error", 0.0, 0.0, 0.0, 1],
                             [3, "heldout", "rejected_error", -2.0, -2.0, -2.0, 1]]
