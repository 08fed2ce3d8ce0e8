# Two entry points for a fresh machine: `make demo` (the main job end to end) and `make test`.
# Each sets up .venv itself: the CPU build of torch first, then tunelab with every extra, all at the
# versions tested together, which constraints.txt pins (pyproject.toml only declares compatible ranges).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SLURM_START := bash scripts/slurm.sh start
# 1: `make test` starts the test Slurm cluster when TUNELAB_TEST_SLURM_CONF names none (test-fast sets 0).
SLURM ?= 1
# The tests cover 4-bit qlora (bitsandbytes) and PostgreSQL registries (psycopg), so every extra.
EXTRAS := dev,qlora,postgres,track
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(PY) -m pip install --quiet -c $(CONSTRAINTS)

.PHONY: install demo test test-fast lint constraints clean

# torch comes first and alone, so that pip takes the CPU build where one is set up, never a CUDA one
# pulled in by a dependency; its version is the one constraints.txt pins.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) torch
	$(PIP_INSTALL) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(OFFLINE) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

# The registry tests run on SQLite and PostgreSQL: without TUNELAB_TEST_PG_URL, the local throwaway server
# (scripts/postgres.sh) is started for them and stopped afterwards, also when they fail or are interrupted
# (scripts/with_test_postgres.sh; a server that was already running is left running).
# TUNELAB_TEST_SQLITE_ONLY=1 skips PostgreSQL.
# The Slurm tests (marked slurm, and slow) run on a one-node cluster of this machine: without
# TUNELAB_TEST_SLURM_CONF, scripts/slurm.sh starts one (installing Slurm when missing) and leaves it running
# (`bash scripts/slurm.sh stop`); TUNELAB_TEST_NO_SLURM=1 leaves them out. test-fast needs no cluster.
# The report tests drive Debian's headless Chromium: scripts/chromium.sh says so and installs the package
# (as root, with apt-get) when it is missing.
# PYTEST_ARGS narrows a run: `make test PYTEST_ARGS='-m "not slow"'` is what test-fast runs.
test: install
	bash scripts/chromium.sh >/dev/null
	slurm_conf="$${TUNELAB_TEST_SLURM_CONF:-}"; \
	if [ -z "$$slurm_conf" ] && [ "$${TUNELAB_TEST_NO_SLURM:-}" != 1 ] && [ "$(SLURM)" = 1 ]; then \
		slurm_conf="$$($(SLURM_START))" || exit 1; \
	fi; \
	$(OFFLINE) TUNELAB_TEST_SLURM_CONF="$$slurm_conf" bash scripts/with_test_postgres.sh $(PY) -m pytest $(PYTEST_ARGS)

# Everything but the end-to-end tests marked slow (training, evaluation, the wheel in a fresh venv, the
# Slurm cluster): a quick check while working. `make test` (and CI) run all of it.
test-fast:
	$(MAKE) --no-print-directory test SLURM=0 PYTEST_ARGS='-m "not slow"'

# ruff; the import contracts of pyproject.toml (layers, no cycles, a light query path) by import-linter;
# and deptry through its test: every imported package declared, nothing declared unused.
lint: install
	$(VENV)/bin/ruff check .
	$(PY) scripts/lint_imports.py
	$(OFFLINE) $(PY) -m pytest -q tests/packaging/test_dependencies.py

# Record the exact set installed in .venv as the tested set. To move to newer releases: change the
# range in pyproject.toml if needed, upgrade in .venv (`.venv/bin/pip install -U NAME`), run
# `make constraints`, then `make test`. Local version labels (torch's +cpu) are dropped so that the
# pins hold for every build of a release; pip itself is left out.
constraints:
	@test -x $(PY) || { echo "no $(VENV): run make install first" >&2; exit 1; }
	{ echo "# The versions tested together: make install and CI install with pip's -c $(CONSTRAINTS)."; \
	  echo "# Written by 'make constraints' from $(VENV); pyproject.toml holds the compatible ranges."; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed -E 's/\+[A-Za-z0-9.]+$$//'; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf .tunelab-demo leaderboard.html leaderboard_runs test-artifacts
