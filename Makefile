# Fresh machine: `make search` runs the default digits search, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.nasprune-installed
# pip prints errors only (-qq): no progress, no notes about the machine's index configuration
PIP := $(BIN)/python -m pip -qq
# The rooms of the package, mapped under `nasprune` (see pyproject.toml)
ROOMS := src/nasprune controller child envs callbacks configs configs/logger

.PHONY: install search test typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the dependencies change, or a module is added or removed (a room's folder
# changes): the strict editable install links each file, which is what lets type checkers
# resolve `nasprune.*`, so a new file needs one.
$(STAMP): pyproject.toml $(ROOMS) | $(BIN)/python
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

search: install
	$(BIN)/nasprune fit -c configs/digits.yaml

# mypy over the package ([tool.mypy] in pyproject.toml); `make test` runs it before the tests
typecheck: install
	$(BIN)/mypy

test: typecheck
	$(BIN)/pytest

clean:
	rm -rf runs .pytest_cache
