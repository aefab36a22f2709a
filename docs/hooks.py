"""MkDocs hooks: the configuration reference (iterpref.config.reference), rendered from the config
dataclasses into the page that holds the ``<!-- config-reference -->`` marker; and the committed
run's tables, copied from reports/summary.md into every block marked for them
(iterpref.reporting.excerpts)."""

from pathlib import Path

MARKER = "<!-- config-reference -->"
SUMMARY = Path(__file__).resolve().parents[1] / "reports" / "summary.md"


def on_page_markdown(markdown, page, config, files):
    from iterpref.reporting import excerpts

    if excerpts.headings(markdown):
        markdown = excerpts.render(markdown, SUMMARY.read_text(encoding="utf-8"))
    if MARKER not in markdown:
        return markdown
    from iterpref.config.reference import markdown as reference

    return markdown.replace(MARKER, reference())
