"""Loaded by Hydra's plugin scan (DVC runs it from the repository root before composing conf/
for `dvc exp run`): registers the resolver that checks the composed configuration."""

from iterpref.config.schema import register

register()
