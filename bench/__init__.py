"""Benchmark scripts (`make bench`: bench/run_all.py) and their headline JSON (`bench.result`).

Each ``bench_*.py`` runs as a script (``python bench/bench_train.py``) and imports as
``bench.bench_train`` from the repository root (the tests do).
"""
