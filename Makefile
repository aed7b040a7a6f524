# The README's commands. Each sets up its own virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit packages bench mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pgkeep demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages the tests use: chromium (the console's browser tests) and age (the
# reference age command: encrypted backups must open without pgkeep). Installed when
# missing and we may (root); otherwise those tests are reported as skipped.
DEBIAN_PACKAGES := chromium age
packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null 2>&1 || echo "$$p not installed: its tests will be skipped"; done

unit: $(STAMP) packages
	$(BIN)/pytest

test: lint typecheck unit

# Not part of `make test`: builds ~2 GB of data and takes several minutes.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Not part of `make test`: mutation testing of the security-critical modules (about a
# minute), against their own fast tests; prints each module's score (goal: 90%).
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run > mutants.log 2>&1 || { tail -c 2000 mutants.log; exit 1; }
	$(BIN)/python tests/mutation_report.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants mutants.log
