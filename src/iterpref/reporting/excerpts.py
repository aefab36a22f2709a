"""Tables of the committed run, copied into the README and the docs from reports/summary.md, so
they cannot drift from it.

A page marks each copy with the heading of the summary section it takes the first table of:

    <!-- summary: Table 1: pass@1 (%) -->
    | variant | HumanEval | ... |
    <!-- /summary -->

`render` replaces every marked block with the current table. The docs site renders its pages at
build time (docs/hooks.py); the README, read as it is, is rewritten by

    python -m iterpref.reporting.excerpts README.md          # --check: exit 1 when a copy is stale

and a test holds every page equal to what `render` makes of it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, command

BLOCK = re.compile(r"(<!-- summary: (?P<heading>[^>]*?) -->\n)(?P<body>.*?)(<!-- /summary -->)", re.S)


def section_table(summary: str, heading: str) -> str:
    """The first Markdown table under ``## heading`` of a summary, with its trailing newline."""
    match = re.search(rf"^## {re.escape(heading)}\n(?P<section>.*?)(?=^## |\Z)", summary, re.S | re.M)
    if match is None:
        raise UserError(f"reports/summary.md has no section '## {heading}'")
    rows = []
    for line in match["section"].splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    if not rows:
        raise UserError(f"reports/summary.md: section '## {heading}' holds no table")
    return "\n".join(rows) + "\n"


def render(page: str, summary: str) -> str:
    """``page`` with every marked block holding the current table of its summary section."""
    return BLOCK.sub(lambda m: m[1] + section_table(summary, m["heading"]) + m[4], page)


def headings(page: str) -> list[str]:
    """The summary sections a page copies tables from."""
    return [m["heading"] for m in BLOCK.finditer(page)]


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description="Copy the committed run's tables from reports/summary.md into pages.")
    ap.add_argument("pages", nargs="+", type=Path)
    ap.add_argument("--summary", type=Path, default=Path("reports/summary.md"))
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a page is stale")
    args = ap.parse_args(argv)
    summary = args.summary.read_text(encoding="utf-8")
    stale = []
    for page in args.pages:
        text = page.read_text(encoding="utf-8")
        new = render(text, summary)
        if new != text:
            stale.append(str(page))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    if stale:
        print(f"{'stale' if args.check else 'updated'}: {', '.join(stale)}")
    sys.exit(1 if stale and args.check else 0)


if __name__ == "__main__":
    main()
