# The two set-up commands of the README:
#   make demo   install into .venv and run the real system end to end
#   make test   install into .venv and run ruff, mypy and the whole test suite
# Everything the tests need (packages, PostgreSQL, Slurm) is installed and started here,
# so that a fresh clone passes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo services bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Real services for the database and batch-system tests. They need root (CI runs as root);
# without it the tests that need them are reported as skipped with the reason.
services:
	@bash scripts/ci/services.sh > .services.env

pytest: $(STAMP) services
	set -a; . ./.services.env; set +a; $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Figures and ratios against the targets of the issues; they print, they never assert.
bench: $(STAMP)
	for b in classad_bench match_bench submit_bench throughput_bench dag_bench; do \
		$(BIN)/python benchmarks/$$b.py || exit 1; \
	done

clean:
	rm -rf $(VENV) .services.env .pytest_cache .mypy_cache .ruff_cache
