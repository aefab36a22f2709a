"""The configuration: checking a composition against the config dataclasses (`schema`) and the
code each pipeline stage depends on (`graph`)."""
