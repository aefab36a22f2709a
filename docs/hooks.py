"""MkDocs hook: renders the configuration reference (iterpref.config.reference) from the config
dataclasses into the page that holds the ``<!-- config-reference -->`` marker."""

MARKER = "<!-- config-reference -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from iterpref.config.reference import markdown as reference

    return markdown.replace(MARKER, reference())
