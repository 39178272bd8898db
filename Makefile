# Yima — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PORT   ?= 8000

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/yima: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/yima ## Create .venv and install Yima with its development tools

run: install ## Install, build the demo brand and serve both apps on 127.0.0.1:$(PORT)
	$(BIN)/yima demo
	$(BIN)/yima serve --port $(PORT)

test: install ## Install and run the whole test suite (SQLite; PostgreSQL/Redis when YIMA_TEST_* are set)
	$(BIN)/pytest

lint: install ## ruff (lint + format), mypy and the import-linter boundary contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install ## Run every benchmark under bench/ (figures go in the README)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

screenshots: install ## Build a demo brand with a month of data and save a PNG of every dashboard page in var/screenshots/
	$(BIN)/python -m yima.screenshots --out var/screenshots

clean: ## Remove the virtualenv, caches and the embedded data under var/
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install run test lint bench screenshots clean
