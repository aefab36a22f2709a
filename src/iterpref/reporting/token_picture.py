"""The probe's per-token picture: a few held-out pairs' chosen and rejected code, each token coloured
by how far training moved its log-prob, one column per variant (reports/figures/probe_tokens.html).

It reads the ``tokens`` entry of reports/probe/<variant>.json (`iterpref.probe.pair_sums`): per
pair and side, every completion token as ``[text, shift, group]``. Blue is a token training made
more likely, red one it made less likely; the colour saturates at the largest absolute shift of
that pair over every variant shown, so the variants of one pair share a scale. The changed lines
(D+ on the chosen side, D- on the rejected side) are boxed.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

CHANGED = {"chosen_fix", "rejected_error"}
STYLE = """body{font-family:sans-serif;margin:1em}
.pair{margin-bottom:2em}.variants{display:flex;flex-wrap:wrap;gap:1em}
.variant{border:1px solid #ccc;padding:.5em;max-width:48em}
pre{font-size:12px;line-height:1.5;white-space:pre-wrap;margin:.3em 0}
.changed{outline:1px solid #333}"""


def _colour(shift: float, scale: float) -> str:
    """A background colour: white at 0, blue up to ``scale``, red down to ``-scale``."""
    strength = min(1.0, abs(shift) / scale) if scale else 0.0
    fade = round(255 * (1 - strength))
    return f"rgb({fade},{fade},255)" if shift > 0 else f"rgb(255,{fade},{fade})"


def _code(tokens: list[list], scale: float) -> str:
    spans = []
    for text, shift, group in tokens:
        cls = ' class="changed"' if group in CHANGED else ""
        spans.append(f'<span{cls} style="background:{_colour(shift, scale)}" title="{shift:+.4f} ({group})">'
                     f"{escape(text)}</span>")
    return "<pre>" + "".join(spans) + "</pre>"


def html(probes: dict[str, dict]) -> str:
    """The page for ``probes`` ({variant: probe report}); pairs in the first report's order, each
    with every variant that pictured it."""
    pair_ids = list(dict.fromkeys(pid for r in probes.values() for pid in r.get("tokens", {})))
    body = []
    for pid in pair_ids:
        shown = {v: r["tokens"][pid] for v, r in probes.items() if pid in r.get("tokens", {})}
        scale = max((abs(t[1]) for sides in shown.values() for tokens in sides.values() for t in tokens), default=0.0)
        columns = [f'<div class="variant"><h3>{escape(v)}</h3><h4>chosen</h4>{_code(sides["chosen"], scale)}'
                   f'<h4>rejected</h4>{_code(sides["rejected"], scale)}</div>' for v, sides in shown.items()]
        body.append(f'<div class="pair"><h2>{escape(pid)}</h2><p>colour saturates at |shift| = {scale:.4f} nats'
                    f'</p><div class="variants">{"".join(columns)}</div></div>')
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Probe: per-token shifts</title>"
            f"<style>{STYLE}</style></head><body><h1>Per-token log-prob shifts on held-out pairs</h1>"
            "<p>Each token's background: <code>log p_policy - log p_reference</code>, blue = up, red = down "
            "(hover for the value and the token's group); boxed tokens are the lines the fix changed (D+ on the "
            "chosen side, D- on the rejected side).</p>" + "".join(body) + "</body></html>\n")


def render(probes: dict[str, dict], path: str | Path) -> str | None:
    """Write the page to ``path``; returns why it was not written (no report holds tokens), or None."""
    probes = {v: r for v, r in probes.items() if r.get("tokens")}
    if not probes:
        return "no reports/probe/<variant>.json holds per-token shifts"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(html(probes))
    return None
