"""The HTML template `dvc plots show` and `dvc plots diff` render into, with vega, vega-lite and
vega-embed inlined, so the page draws with no network (dvc-render's own page loads them from a CDN).

    python -m iterpref.reporting.plots_page .cache/plots/node_modules .cache/plots/offline.html

`make install` fetches the three packages at pinned versions with npm, writes the template and
points DVC at it (``dvc config --local plots.html_template``). The page draws every plot as SVG and,
once all have settled, records on ``<body>`` how many plots there are (``data-plots``), how many
drew (``data-plots-drawn``) and the errors met (``data-plot-errors``): what a headless browser checks.
"""

from __future__ import annotations

from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, command

# package -> its browser bundle (UMD, exposes vega / vegaLite / vegaEmbed), in load order
BUNDLES = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}

# vegaEmbed wrapped: SVG output, no action menu, each embedding's outcome counted; console errors kept.
RECORDER = """
(function () {
  var embed = window.vegaEmbed, outcomes = [], errors = [];
  var consoleError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); consoleError.apply(console, arguments); };
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  window.vegaEmbed = function (el, spec, opts) {
    var done = embed(el, spec, Object.assign({renderer: "svg", actions: false}, opts || {}));
    outcomes.push(done.then(function () { return 1; }, function (err) { errors.push(String(err)); return 0; }));
    return done;
  };
  window.addEventListener("load", function () {
    Promise.all(outcomes).then(function (drawn) {
      document.body.setAttribute("data-plots", String(outcomes.length));
      document.body.setAttribute("data-plots-drawn", String(drawn.reduce(function (a, b) { return a + b; }, 0)));
      document.body.setAttribute("data-plot-errors", errors.join(" | "));
    });
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
{bundles}
<style>body {{ font-family: sans-serif; }} div[id] {{ margin: 1em 0; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def template(node_modules: str | Path) -> str:
    """The page with the three bundles from ``node_modules`` inlined, ``{plot_divs}`` where DVC puts
    the plots (and ``{refresh_tag}`` for ``dvc plots show --refresh``)."""
    node_modules = Path(node_modules)
    scripts = []
    for package, bundle in BUNDLES.items():
        path = node_modules / package / bundle
        if not path.is_file():
            raise UserError(f"{path}: missing; install the packages first (make install runs npm)")
        code = path.read_text(encoding="utf-8")
        for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
            if placeholder in code:
                raise UserError(f"{path} contains {placeholder!r}, which DVC would replace")
        scripts.append(f"<script>/* {package} */\n{code}\n</script>")
    scripts.append(f"<script>{RECORDER}</script>")
    return PAGE.format(refresh_tag="{refresh_tag}", bundles="\n".join(scripts))


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("node_modules", help="the folder npm installed vega, vega-lite and vega-embed into")
    ap.add_argument("out", help="the template to write")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(template(args.node_modules), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
