# Two entry points: `make run` (the main job on the embedded default) and `make test`.
# Both create .venv and install cascade-ci into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

# uv installs exactly what uv.lock pins (`--frozen`: never a fresh resolution), editable, every extra;
# `--inexact` keeps uv itself, which pip puts into the venv first (only python3 is needed beforehand).
$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --all-extras --python $(BIN)/python --quiet
	touch $@

# The glucose + GitHub example, configured as a user's repository would be (examples/glucose-github).
run: install
	cd examples/glucose-github && $(CURDIR)/$(BIN)/cascade run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/actionlint
	$(BIN)/zizmor --offline --quiet .
	$(BIN)/zizmor --offline --quiet --persona=auditor .

bench: install
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/main_job.py
	$(BIN)/python bench/incremental_validation.py
	$(BIN)/python bench/zero_copy.py
	$(BIN)/python bench/pandera_throughput.py
	$(BIN)/python bench/gc_scale.py
	$(BIN)/python bench/transform_scan.py

clean:
	rm -rf $(VENV) .cascade reports examples/*/.cascade examples/*/reports
