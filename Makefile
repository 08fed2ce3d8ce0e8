# Two entry points for a fresh machine: `make demo` (the main job end to end) and `make test`.
# Each sets up .venv itself: the CPU build of torch first, then tunelab with its pinned dependencies.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

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

test: install
	$(OFFLINE) $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .tunelab-demo leaderboard.html
