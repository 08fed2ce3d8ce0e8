# Two entry points for a fresh machine: `make demo` (the main job end to end) and `make test`.
# Each sets up .venv itself: the CPU build of torch first, then tunelab with its pinned dependencies.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PG_START := bash scripts/postgres.sh start

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(OFFLINE) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

# The registry tests run on SQLite and PostgreSQL: without TUNELAB_TEST_PG_URL, start the local
# throwaway server (scripts/postgres.sh) and use it. TUNELAB_TEST_SQLITE_ONLY=1 skips PostgreSQL.
# The report tests drive Debian's headless Chromium (scripts/chromium.sh installs it when missing).
test: install
	bash scripts/chromium.sh >/dev/null
	pg_url="$${TUNELAB_TEST_PG_URL:-}"; \
	if [ -z "$$pg_url" ] && [ "$${TUNELAB_TEST_SQLITE_ONLY:-}" != 1 ]; then \
		pg_url="$$($(PG_START))" || exit 1; \
	fi; \
	$(OFFLINE) TUNELAB_TEST_PG_URL="$$pg_url" $(PY) -m pytest

# ruff, then the import contracts of pyproject.toml (layers, no cycles, a light query path) by import-linter.
lint: install
	$(VENV)/bin/ruff check .
	$(PY) scripts/lint_imports.py

clean:
	rm -rf .tunelab-demo leaderboard.html leaderboard_runs test-artifacts
