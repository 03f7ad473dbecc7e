# Set-up and main entry points. Every target installs into .venv first if needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-fast docs docs-figures bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,dask,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metarep run --out runs/demo

# the gates of `make test` (and CI): the rule set is pyproject's [tool.ruff]
LINT_PATHS := src tests benchmarks examples docs/_gen

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# everything: lint, the docs, then the whole suite (a few minutes on 2 cores)
test: lint docs
	$(PY) -m pytest

# the documentation site into site/ (git-ignored); --strict: any warning fails (mkdocs.yml)
# (the two variables silence the theme's and a plugin's banners about MkDocs' future)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --quiet

# the figures of docs/reproducing.md, from the quick version of every experiment (minutes)
DOCS_FIGURES := docs/assets/reproduce
docs-figures: $(STAMP)
	$(VENV)/bin/metarep reproduce --quick --seeds 2 --out build/docs-figures
	mkdir -p $(DOCS_FIGURES)
	install -m 644 build/docs-figures/*.png $(DOCS_FIGURES)/

# unit tests only, no end-to-end runs of whole commands or long convergence checks (about a minute)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/metarep bench

clean:
	rm -rf runs .pytest_cache
