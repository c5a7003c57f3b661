# Two commands do everything on a fresh clone: `make test` and `make book` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PROFILE ?= tiny

.PHONY: venv test test-fast book clean-book lint format

venv: $(STAMP)

# Created on demand, re-installed only when pyproject.toml (the pins) changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "setuptools<81"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation visdom==0.2.4
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (robseg)" >/dev/null
	rm -f $(VENV)/.installed-* && touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow and not notebooks and not book"

book: $(STAMP)
	$(BIN)/python -m tools.book_build --profile $(PROFILE)

clean-book:
	rm -rf _build book/_generated
