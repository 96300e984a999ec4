# AYLA benchmark suite. `make help` lists the targets; each sets up .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
GUARD = $(if $(MIX),--mix-fingerprints) $(if $(DIRTY),--allow-dirty)   # make reproduce/fair: see pipelines/guard.py
# The data root has one rule, in experiments/__init__.py (default_data_root): $AYLA_DATA when set, else
# ../shared/data when it holds the data (this project's CI), else data/ (filled by `make data`).

.DEFAULT_GOAL := help
.PHONY: help install test test-quick lint reproduce reproduce-quick compare figures fair fair-quick bench data clean run

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  variables: SEEDS=n (default: conf/reproduce.yaml), OUT=folder, AYLA_DATA=folder (default: ../shared/data"
	@echo "             when it holds the data, else data/)"
	@echo "             LAUNCHER=local|slurm (conf/launcher/: populations as submitit jobs),"
	@echo "             FIGURES=fig06,fig07 (a subset of conf/reproduce.yaml's figures)"
	@echo "             MIX=1: add runs to a folder holding another code version's; DIRTY=1: write results/ from"
	@echo "             uncommitted changes (both refused by default: experiments/pipelines/guard.py)"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'   # the add-on (editable), the suite's packages, tests and plugins
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its dev tools

test: $(VENV)/.installed ## lint, then the whole test suite (pytest-xdist: one worker per core)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto

test-quick: $(VENV)/.installed ## the inner loop: every test not marked slow (under a minute on 2 cores)
	$(PY) -m pytest -m "not slow"

run: $(VENV)/.installed ## one run: make run ARGS="experiment=mnist optimizer=ayla N1=0.1" (python run.py ARGS)
	$(PY) run.py $(ARGS)

lint: $(VENV)/.installed ## ruff
	$(VENV)/bin/ruff check .

data: $(VENV)/.installed ## download MNIST and CIFAR-100 into the data root (AYLA_DATA, else data/; needs internet)
	$(PY) scripts/fetch_data.py mnist cifar100

clean: ## remove outputs/ and multirun/ (never results/)
	rm -rf outputs multirun

reproduce: $(VENV)/.installed ## every paper figure over SEEDS seeds (default 5) into OUT (default results/), resumable
	$(PY) scripts/reproduce.py $(if $(SEEDS),--seeds $(SEEDS)) $(if $(OUT),--out $(OUT)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(FIGURES),--figures $(FIGURES)) $(GUARD)

reproduce-quick: $(VENV)/.installed ## the whole pipeline in a few minutes: few epochs, 1 seed, data subsets
	$(PY) scripts/reproduce.py --quick $(if $(OUT),--out $(OUT)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(FIGURES),--figures $(FIGURES))

compare: $(VENV)/.installed ## does a rerun agree with results/? OUT=<the rerun's folder>; exit code 0 when it does
	@test -n "$(OUT)" || { echo "usage: make compare OUT=<folder of a rerun, e.g. from make reproduce OUT=...>"; exit 2; }
	$(PY) scripts/compare.py --out $(OUT)

figures: $(VENV)/.installed ## redraw figures, REPORT.md, BENCH.md and the README block from the CSVs alone
	$(PY) scripts/reproduce.py --draw-only $(if $(OUT),--out $(OUT))

fair: $(VENV)/.installed ## tuned baselines vs AYLA with equal budgets (MNIST, CIFAR-100, curve fit), after make reproduce; JOBS=2 trials side by side
	$(PY) scripts/fair.py $(if $(OUT),--out $(OUT)) $(if $(JOBS),--jobs $(JOBS)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(EXPERIMENTS),--experiments $(EXPERIMENTS)) $(GUARD)

fair-quick: $(VENV)/.installed ## the fair-comparison pipeline on small subsets, one seed
	$(PY) scripts/fair.py --quick $(if $(OUT),--out $(OUT)) $(if $(LAUNCHER),--launcher $(LAUNCHER))

bench: $(VENV)/.installed ## time an epoch (numpy, DataLoader, suite, fused, an lr sweep) into results/bench.csv and BENCH.md; TINY=1 for a check
	$(PY) scripts/bench.py $(if $(TINY),--tiny)
