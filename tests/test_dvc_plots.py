"""dvc.yaml's plots: the report stage's data files (`iterpref.reporting.dvc_plots`) drawn by real DVC
with the templates in .dvc/plots/, two experiments side by side (`dvc plots diff main EXP`), into the
offline page `make install` builds (`iterpref.reporting.plots_page`), rendered in headless Chromium
with no network: every plot drew, as SVG, with marks and no error."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_repo import bare_repo, sh
from test_reporting import CURVE, SCORES, TRAIN, first, load, make_run

from iterpref.reporting import dvc_plots, plots_page

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".cache/plots/node_modules"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def test_plot_data_files(tmp_path):
    run = make_run(tmp_path / "run")
    counts = dvc_plots.write(load(run), tmp_path / "plots")
    # dpo's 2-step curve (target_dpo's report has none), 3 variants' scored benchmarks, 2 probes x 4 groups,
    # 2 probes x 2 steps x 2 pair sets x 6 groups along training, 4 rounds
    assert counts == {"training.csv": 2, "pass_at_1.csv": 5, "heldout_shifts.csv": 8, "probe_along_training.csv": 48,
                      "cumulative_pass_rate.csv": 4}
    rows = list(csv.DictReader((tmp_path / "plots/training.csv").open()))
    assert rows[1] == {"variant": "dpo", "step": "2", "loss": "0.6", "reward_margin": "0.1", "reward_accuracy": "0.75",
                       "learning_rate": ""}
    shifts = list(csv.DictReader((tmp_path / "plots/heldout_shifts.csv").open()))
    assert shifts[-1] == {"variant": "target_dpo", "group": "focal margin", "shift": "0.12", "lo": "0.07", "hi": "0.18"}
    steps = list(csv.DictReader((tmp_path / "plots/probe_along_training.csv").open()))
    assert {"variant": "target_dpo", "split": "in sample", "group": "D- (error lines)", "step": "4", "shift": "-0.2",
            "lo": "-0.21000000000000002", "hi": "-0.19"} in steps
    assert {r["shift"] for r in steps if r["step"] == "0"} == {"0.0"}
    assert {"variant": "target_dpo", "benchmark": "HumanEval", "pass_at_1": "75.0"} in list(
        csv.DictReader((tmp_path / "plots/pass_at_1.csv").open()))
    # every file exists, with its header, when the run has nothing for it
    empty = make_run(tmp_path / "empty", scores={}, train={}, pairs=False, probes={})
    assert set(dvc_plots.write(load(empty), tmp_path / "none").values()) == {0}
    assert (tmp_path / "none/training.csv").read_text() == "variant,step,loss,reward_margin,reward_accuracy,learning_rate\n"


def test_every_declared_plot_reads_a_file_the_report_writes():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    templates = {p.stem for p in (ROOT / ".dvc/plots").glob("*.json")}
    for entry in plots:
        [(name, spec)] = entry.items()
        [(path, field)] = spec["y"].items()
        name_of_file = Path(path).name
        assert path == f"reports/plots/{name_of_file}" and name_of_file in dvc_plots.FILES, name
        assert {spec["x"], field} <= set(dvc_plots.FILES[name_of_file][1]), name
        assert spec["template"] in templates | {"linear"}, name


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory):
    """A DVC repository with this project's dvc.yaml, params.yaml and plot templates; ``main`` holds one
    run's reports/plots, the branch ``beta02`` another (other scores, a longer curve); the workspace
    is ``main``."""
    root = tmp_path_factory.mktemp("plots") / "repo"
    env = bare_repo(root)
    for rel in ("dvc.yaml", "params.yaml", *[str(p.relative_to(ROOT)) for p in (ROOT / ".dvc/plots").glob("*.json")]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, root / rel)
    curve = [{**h, "learning_rate": 1e-5 * h["step"] / 2} for h in CURVE]
    train = {v: {**t, "curve": curve} for v, t in TRAIN.items()}
    dvc_plots.write(load(make_run(root / "run_main", train=train)), root / "reports/plots")
    sh(["git", "add", "-A", "dvc.yaml", "params.yaml", ".dvc", "reports"], root, env)
    sh(["git", "commit", "-qm", "main"], root, env)
    sh(["git", "checkout", "-q", "-b", "beta02"], root, env)
    longer = [*curve, {"step": 3, "loss": 0.5, "rewards/margins": 0.3, "rewards/accuracies": 1.0, "learning_rate": 5e-6}]
    other = {**SCORES, "target_dpo": {"humaneval": first(7), "mbpp": first(2)}}
    dvc_plots.write(load(make_run(root / "run_exp", scores=other, train={v: {**t, "curve": longer}
                                                                       for v, t in TRAIN.items()})),
                    root / "reports/plots")
    sh(["git", "commit", "-qam", "beta02"], root, env)
    sh(["git", "checkout", "-q", "main"], root, env)
    return root, env


@pytest.fixture(scope="module")
def offline_template(tmp_path_factory) -> Path:
    if not NODE_MODULES.is_dir():
        pytest.skip(f"{NODE_MODULES} is missing: make install fetches vega with npm")
    path = tmp_path_factory.mktemp("template") / "offline.html"
    path.write_text(plots_page.template(NODE_MODULES))
    return path


def dump_dom(page: Path, profile: Path, timeout_s: float = 240) -> tuple[int, str, str]:
    """Load ``page`` in headless Chromium (a fresh profile, no background network) and return its exit
    status, the DOM once the page's scripts have run, and its log; on a timeout the whole process
    group is killed, so no renderer outlives the test."""
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return proc.returncode, out, err


def test_plots_diff_renders_offline_in_headless_chromium(plots_repo, offline_template, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is missing: make test installs it (apt-get install chromium)")
    root, env = plots_repo
    declared = len(yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"])
    sh(dvc("plots", "diff", "main", "beta02", "--html-template", str(offline_template), "-o", str(tmp_path / "out")),
       root, env)
    page = tmp_path / "out/index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=", html) and "cdn.jsdelivr" not in html  # nothing to fetch
    assert html.count("vegaEmbed('#") == declared
    returncode, dom, stderr = dump_dom(page, tmp_path / "profile")
    assert returncode == 0 and "<body" in dom, stderr[-3000:]
    body = re.search(r"<body\s([^>]*)>", dom).group(1)  # the page's own body (a bundle holds "<body>" too)
    status = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body))
    assert status == {"data-plots": str(declared), "data-plots-drawn": str(declared), "data-plot-errors": ""}, status
    assert dom.count('class="marks"') == declared  # one SVG per plot
    # each plot drew its data: a mark per point, labelled with its values (and its revision)
    for label in ("step: 3; loss: 0.5; variant: dpo; revision: beta02", "step: 2; loss: 0.6; variant: target_dpo; revision: main",
                  "step: 2; reward_margin: 0.1; variant: dpo; revision: main",
                  "step: 3; reward_accuracy: 1; variant: target_dpo; revision: beta02",
                  "step: 1; learning_rate: 0.000005; variant: dpo; revision: main",
                  "benchmark: HumanEval; pass_at_1: 87.5; variant: target_dpo",  # only beta02 has 7 of 8
                  "benchmark: MBPP; pass_at_1: 62.5; variant: reference",
                  "group: focal margin; shift: 0.12; variant: target_dpo", "group: chosen; lo: ",
                  "round: 3; pass_rate: 100"):
        assert f'aria-label="{label}' in dom, label
