# Fresh machine: `make search` runs the default digits search, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.nasprune-installed

.PHONY: install search test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

search: install
	$(BIN)/nasprune fit -c configs/digits.yaml

test: install
	$(BIN)/pytest

clean:
	rm -rf runs .pytest_cache
