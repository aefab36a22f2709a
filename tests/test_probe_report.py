"""The probe's part of the report: the position table (held out and in sample) in reports/summary.md
and the per-token picture (iterpref.reporting.token_picture), from probe reports in the shape
stages/probe.py writes (tests/test_probe.py writes real ones)."""

from __future__ import annotations

import re

import matplotlib.image
from test_reporting import PROBE, interval, load, make_run, section

from iterpref.reporting import figures, summary, token_picture

POSITIONS = {"chosen_prefix": interval(0.001, -0.002, 0.004), "chosen_fix": interval(0.02, 0.01, 0.03),
             "chosen_suffix": interval(0.01, 0.0, 0.02), "rejected_prefix": interval(0.001, -0.002, 0.004),
             "rejected_error": interval(-0.2, -0.3, -0.1, 22), "rejected_suffix": interval(-0.05, -0.08, -0.02)}
TOKENS = {"t/1#0": {"chosen": [["def f(x):\n", 0.0, "chosen_prefix"], ["    return <x>", 0.5, "chosen_fix"]],
                    "rejected": [["def f(x):\n", 0.0, "rejected_prefix"], ["    return 0", -0.25, "rejected_error"]]}}


def probe_with_positions(variant: str) -> dict:
    in_sample = {**PROBE[variant], **POSITIONS, "pairs": 16}
    return {**PROBE[variant], **POSITIONS, "in_sample": in_sample, "tokens": TOKENS}


def test_position_section_has_both_samples_per_variant(tmp_path):
    run = make_run(tmp_path, probes={v: probe_with_positions(v) for v in PROBE})
    lines = section(summary.markdown(load(run), {"probe_tokens": "figures/probe_tokens.html"}),
                    "Where the loss acts, by position")
    assert ("| variant | pairs from | pairs | chosen, prefix | D+ (fix lines) | chosen, suffix | rejected, prefix | "
            "D- (error lines) | rejected, suffix | focal margin | accuracy |") in lines
    assert ("| dpo | held out | 24 | +0.001 [-0.002, +0.004] | +0.020 [+0.010, +0.030] | +0.010 [+0.000, +0.020] | "
            "+0.001 [-0.002, +0.004] | -0.200 [-0.300, -0.100] | -0.050 [-0.080, -0.020] | +0.020 [-0.040, +0.080] | "
            "0.50 [0.29, 0.71] |") in lines
    assert [line.split(" | ")[:3] for line in lines if line.startswith("| target_dpo")] == [
        ["| target_dpo", "held out", "24"], ["| target_dpo", "in sample", "16"]]
    assert any("[per-token picture](figures/probe_tokens.html)" in line for line in lines)


def test_reports_of_the_first_probe_have_no_position_table(tmp_path):
    lines = section(summary.markdown(load(make_run(tmp_path)), {}, {}), "Where the loss acts, by position")
    assert [line for line in lines if line] == ["No reports/probe/<variant>.json holds the position groups."]


def test_token_picture_colours_every_token_by_its_shift(tmp_path):
    path = tmp_path / "figures/probe_tokens.html"
    probes = {v: probe_with_positions(v) for v in PROBE}
    assert token_picture.render(probes, path) is None
    page = path.read_text()
    spans = re.findall(r'<span( class="changed")? style="background:([^"]+)" title="([^"]+)">([^<]*)</span>', page)
    assert len(spans) == 2 * 4  # two variants, four tokens each
    by_title = {title: (bool(changed), colour, text) for changed, colour, title, text in spans}
    # the pair's largest |shift| (0.5) saturates; -0.25 is half-way to red; 0 is white
    assert by_title["+0.5000 (chosen_fix)"] == (True, "rgb(0,0,255)", "    return &lt;x&gt;")
    assert by_title["-0.2500 (rejected_error)"] == (True, "rgb(255,128,128)", "    return 0")
    assert by_title["+0.0000 (chosen_prefix)"] == (False, "rgb(255,255,255)", "def f(x):\n")
    assert page.count('<div class="variant"><h3>') == 2 and "<h2>t/1#0</h2>" in page


def test_token_picture_needs_per_token_shifts(tmp_path):
    path = tmp_path / "probe_tokens.html"
    assert token_picture.render(PROBE, path) == "no reports/probe/<variant>.json holds per-token shifts"
    assert not path.exists()


def test_along_training_section_shows_the_figure_or_why_not(tmp_path):
    inp = load(make_run(tmp_path))
    written, skipped = figures.render(inp, tmp_path / "figures")
    lines = section(summary.markdown(inp, {n: f"figures/{p.name}" for n, p in written.items()}, skipped),
                    "Where the loss acts, along training")
    assert "![the probe along training](figures/probe_along_training.png)" in lines
    h, w = matplotlib.image.imread(written["probe_along_training"]).shape[:2]
    assert (w, h) == (12 * 120, round(6.4 * 120))  # six panels, inches at 120 dpi
    flat = {v: {k: r for k, r in PROBE[v].items() if k != "along_training"} for v in PROBE}
    inp = load(make_run(tmp_path / "flat", probes=flat))
    written, skipped = figures.render(inp, tmp_path / "flat_figures")
    assert "probe_along_training" not in written
    lines = section(summary.markdown(inp, {}, skipped), "Where the loss acts, along training")
    assert ("Figure skipped (the probe along training): no reports/probe/<variant>.json holds a curve along training "
            "(train.common.probe_points: 0).") in lines
