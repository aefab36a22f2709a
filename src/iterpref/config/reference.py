"""The configuration reference: every params section and key, with its type, its allowed range
or choices, its value in the default composition and the description from its config
dataclass's docstring. The docs site renders it into docs/configuration.md at build time
(docs/hooks.py), so it cannot drift from the code.

    python -m iterpref.config.reference      # print the Markdown
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from iterpref.config.schema import describe, hints, value_at


def sections() -> list[tuple[str, type, str]]:
    """(params key, dataclass, where it is used) for every registered section with a dataclass,
    in params order."""
    from iterpref.config.sections import SECTIONS

    return [(s.key, s.cls, s.note) for s in SECTIONS if dataclasses.is_dataclass(s.cls)]


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the class docstring (``name: text`` or
    ``name (`type`...): text`` entries under Attributes/Parameters, continuation lines joined)."""
    doc = inspect.getdoc(cls) or ""
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        m = re.match(r"^\s{4}(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$", line)
        if m and m.group(1) in names:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.startswith(" " * 8):
            out[current] = f"{out[current]} {line.strip()}".strip()
        elif not line.strip():
            continue
        else:
            current = None
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(defaults: dict | None = None) -> str:
    """The reference as Markdown: one table per section."""
    if defaults is None:
        from iterpref import params

        defaults = params.compose()
    lines = []
    for key, cls, note in sections():
        lines += [f"### `{key}`" + (f" ({note})" if note else ""), "",
                  (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "), "",
                  "| key | type | allowed | default run | description |", "|---|---|---|---|---|"]
        docs, types_ = field_docs(cls), hints(cls)
        section = value_at(defaults, key, None) if "<" not in key else None
        for f in dataclasses.fields(cls):
            bounds = ", ".join(f"{'>=' if op == 'ge' else '>' if op == 'gt' else '<=' if op == 'le' else '<'} {v}"
                               for op, v in f.metadata.get("bounds", {}).items())
            value = section.get(f.name) if isinstance(section, dict) else None
            shown = f"`{value!r}`" if isinstance(section, dict) and f.name in section else ""
            lines.append(f"| `{f.name}` | {_cell(describe(types_[f.name]))} | {bounds} | {_cell(shown)} | "
                         f"{_cell(docs.get(f.name, ''))} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
