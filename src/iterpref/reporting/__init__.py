"""Reports of a run: `iterpref.reporting.summary` (reports/summary.md and the DVC metrics file),
`iterpref.reporting.figures`, `iterpref.reporting.compare` (tasks gained and lost, McNemar's exact
test) and `iterpref.reporting.wandb_report` (the saved W&B report).

Nothing is imported here: ``python -m iterpref.reporting.compare`` and ``python -m
iterpref.reporting.wandb_report`` load only what they use.
"""
