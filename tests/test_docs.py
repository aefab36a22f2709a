"""The documentation: the MkDocs site builds with no warning, every page is in its nav, and the
README stays a short README for users (measurements live in docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import processes
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 350
README_MAX_DATED_LINES = 5
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def nav_pages(nav) -> list[str]:
    """Every page file named in a MkDocs nav (nested sections included)."""
    pages: list[str] = []
    if isinstance(nav, str):
        pages.append(nav)
    elif isinstance(nav, list):
        for item in nav:
            pages += nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            pages += nav_pages(value)
    return pages


def load_mkdocs_config() -> dict:
    # mkdocs.yml may use !!python/name tags (pymdownx options); only the plain keys are read here
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs / mkdocs-material are not installed (the `docs` extra: pip install -e '.[docs]')")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = processes.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_short_and_mostly_undated():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    dated = [f"{n}: {line}" for n, line in enumerate(lines, 1) if DATE.search(line)]
    assert len(dated) <= README_MAX_DATED_LINES, (
        f"README.md has {len(dated)} lines with a date (at most {README_MAX_DATED_LINES}; "
        "dated measurements belong in docs/benchmarks.md):\n" + "\n".join(dated))


def test_every_docs_page_is_in_the_nav():
    config = load_mkdocs_config()
    docs_dir = ROOT / config.get("docs_dir", "docs")
    pages = {p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*.md")}
    in_nav = set(nav_pages(config["nav"]))
    assert pages, f"no pages under {docs_dir}"
    assert not pages - in_nav, f"pages missing from mkdocs.yml's nav: {sorted(pages - in_nav)}"
    assert not in_nav - pages, f"nav entries with no page under {docs_dir}: {sorted(in_nav - pages)}"


def test_readme_links_to_docs_pages_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]+)", text)
    assert links, "README.md links to no docs page"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README.md links to missing pages: {missing}"


def test_the_config_reference_covers_every_key_of_the_default_run():
    from iterpref import params as P
    from iterpref.config import reference

    text = reference.markdown()
    default = P.compose()
    for section in ("model", "sandbox", "debug", "pairs", "runtime"):
        for key in default[section]:
            assert f"| `{key}` |" in text, f"{section}.{key}"
    for key in default["train"]["common"]:
        assert f"| `{key}` |" in text, f"train.common.{key}"
    for key in [*default["eval"], *default["eval"]["sampling"], *default["logging"]["wandb"]]:
        assert f"| `{key}` |" in text, key
    assert "| `beta` | float | > 0 | `0.1` | DPO temperature (paper 0.1). |" in text


# ----------------------------------------------------------------------------- numbers that cannot drift

def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_tables_are_the_committed_summarys():
    """The README is read as it is: its copied tables must be reports/summary.md's (the docs pages
    are rendered from it when the site is built). `python -m iterpref.reporting.excerpts README.md`
    rewrites them."""
    from iterpref.reporting import excerpts

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert {"Table 1: pass@1 (%)", "Which differences are real", "Held-out pairs"} <= set(excerpts.headings(readme))
    summary = (ROOT / "reports/summary.md").read_text(encoding="utf-8")
    assert excerpts.render(readme, summary) == readme, "stale: run python -m iterpref.reporting.excerpts README.md"


def test_every_page_copying_the_summary_names_a_section_it_has():
    from iterpref.reporting import excerpts

    summary = (ROOT / "reports/summary.md").read_text(encoding="utf-8")
    for page in pages():
        for heading in excerpts.headings(page.read_text(encoding="utf-8")):
            assert excerpts.section_table(summary, heading), (page, heading)


def test_excerpts_render_replaces_a_stale_table():
    from iterpref.reporting import excerpts

    summary = "# x\n\n## Table 1\n\ntext\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nafter\n\n## Other\n| z |\n"
    page = "intro\n<!-- summary: Table 1 -->\n| a | b |\n|---|---|\n| 1 | 3 |\n<!-- /summary -->\nend\n"
    assert excerpts.render(page, summary) == page.replace("| 1 | 3 |", "| 1 | 2 |")
    with pytest.raises(Exception, match="no section '## Missing'"):
        excerpts.render("<!-- summary: Missing -->\n<!-- /summary -->", summary)


METRIC_CLAIM = re.compile(r"DVC metric|dvc metrics|metrics file|pass@1 per benchmark")
REPORT_PATH = re.compile(r"reports/[\w/<>*{}.,-]*[\w*>}]")


def claims(text: str) -> list[str]:
    """The sentences of a page's prose, and its code blocks' commented lines, one string each."""
    out, prose, in_code = [], [], False
    for line in text.splitlines() + [""]:
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            if " # " in line:  # a command and what its comment says of it
                out.append(line)
        elif line.strip():
            prose.append(line)
        else:
            out += re.split(r"(?<=[.;])\s", " ".join(prose))
            prose = []
    return out


def test_no_page_calls_a_file_a_dvc_metric_that_dvc_yaml_does_not_declare():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {next(iter(m)) if isinstance(m, dict) else m for s in stages.values()
                for m in s.get("do", s).get("metrics", [])}
    wrong = [f"{page.name}: {path} in: {claim.strip()[:160]}" for page in pages()
             for claim in claims(page.read_text(encoding="utf-8")) if METRIC_CLAIM.search(claim)
             for path in REPORT_PATH.findall(claim) if path not in declared]
    assert not wrong, "\n".join(wrong)


def test_the_metric_check_reads_prose_and_code_comments():
    text = "Intro. `reports/x.json` is a DVC metric.\n\n```bash\ndvc metrics diff A B   # pass@1 (reports/eval/*)\n```\n"
    found = [c for c in claims(text) if METRIC_CLAIM.search(c)]
    assert [REPORT_PATH.findall(c) for c in found] == [["reports/x.json"], ["reports/eval/*"]]


PROSE = re.compile(r"<!-- numbers from: (.+?) -->(.*?)<!-- /numbers -->", re.S)
SIGNED = re.compile(r"[+-]\d+\.\d{3}\b")


def test_prose_numbers_said_to_be_the_runs_are_in_its_summary():
    """Prose between ``<!-- numbers from: SECTION -->`` and ``<!-- /numbers -->`` reads a run's
    table in words: every signed number it quotes (``+0.019``) must be in that section's table of
    the committed reports/summary.md, so a new run that changes the table fails here until the
    words are rewritten."""
    from iterpref.reporting import excerpts

    summary = (ROOT / "reports/summary.md").read_text(encoding="utf-8")
    found = 0
    for page in pages():
        for heading, prose in PROSE.findall(page.read_text(encoding="utf-8")):
            table = set(SIGNED.findall(excerpts.section_table(summary, heading)))
            quoted = SIGNED.findall(prose)
            assert quoted, (page.name, heading)
            assert [n for n in quoted if n not in table] == [], (page.name, heading)
            found += 1
    assert found, "no page marks prose as a run's numbers"
