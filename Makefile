# Set-up and main entry points. Every target installs into .venv first if needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-fast test-stress docs docs-figures docs-blocks docs-data bench clean

$(STAMP): pyproject.toml
	@echo "==> [1/3] virtual environment in $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "==> [2/3] torch 2.13.0 (CPU wheel, about 200 MB; a minute or two on a fresh machine)"
	$(PY) -m pip install -q --progress-bar off torch==2.13.0
	@echo "==> [3/3] metarep and its dependencies"
	$(PY) -m pip install -q --progress-bar off -e ".[dev,dask,docs]"
	touch $(STAMP)
	@echo "==> installed: $(VENV)/bin/metarep"

install: $(STAMP)

# FO-ANIL with infinitely many tasks and with a pool of 5000, against the theory: runs/demo/demo.png
demo: $(STAMP)
	$(VENV)/bin/metarep demo --out runs/demo

# the gates of `make test` (and CI): the rule set is pyproject's [tool.ruff]
LINT_PATHS := src tests benchmarks examples docs/_gen

lint: $(STAMP)
	@echo "==> lint (ruff check, ruff format --check)"
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# everything: lint, the docs, then the whole suite (a few minutes on 2 cores)
test: lint docs
	@echo "==> the whole test suite (a few minutes on 2 cores; one dot per test, [done/total] per line)"
	$(PY) -m pytest

# the documentation site into site/ (git-ignored); --strict: any warning fails (mkdocs.yml)
# (the two variables silence the theme's and a plugin's banners about MkDocs' future)
docs: docs-figures
	@echo "==> documentation site (mkdocs build --strict)"
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --quiet

# every figure of the docs, drawn by today's code from the committed data in docs/data/ (seconds)
docs-figures: $(STAMP)
	@echo "==> the docs' figures from docs/data/ (docs/_gen/figures.py)"
	$(PY) docs/_gen/figures.py

# the tables and numbers of the docs that come from result files (docs/_gen/blocks.py), written into the pages
docs-blocks: $(STAMP)
	$(PY) docs/_gen/blocks.py

# measure again the data of the reproduction figures (metarep reproduce --quick --seeds 2, minutes)
REPRODUCED := learning unlearning methods adaptation width alpha relu
docs-data: $(STAMP)
	$(VENV)/bin/metarep reproduce $(REPRODUCED) --quick --seeds 2 --out build/docs-data
	for n in $(REPRODUCED); do install -m 644 build/docs-data/$$n.json docs/data/reproduce/; done
	$(MAKE) docs-figures

# unit tests only, no end-to-end runs of whole commands or long convergence checks (about a minute)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# the whole suite twice (torch threads forced to 1, then 4) while every core is kept busy by other processes
# (tests/stress.sh; about 40 minutes on 2 cores)
test-stress: $(STAMP)
	PY=$(PY) bash tests/stress.sh

bench: $(STAMP)
	$(VENV)/bin/metarep bench

# caches only: results (runs/, reproduction/, sweep folders) are never deleted by make; remove them by hand
clean:
	rm -rf .pytest_cache .ruff_cache
	find src tests benchmarks examples -name __pycache__ -type d -prune -exec rm -rf {} +
