"""Loaded at start-up by the processes benchmarks/train_overhead.py launches (this directory is on their PYTHONPATH).

FIRST_STEP_FILE=FILE: when the process's first training step begins (the first call of the transformers
Trainer's `training_step`, after its first batch is ready), the wall-clock time (time.time()) goes to FILE.
The Trainer is patched as transformers defines it, so nothing is imported here ahead of the process's own imports.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time

TRAINER_MODULE = "transformers.trainer"


def _record_first_step(trainer_class: type, path: str) -> None:
    original = trainer_class.training_step

    def training_step(self, *args, **kwargs):
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(repr(time.time()))
        return original(self, *args, **kwargs)

    trainer_class.training_step = training_step


class _PatchWhenImported(importlib.abc.MetaPathFinder):
    def __init__(self, path: str) -> None:
        self.path = path

    def find_spec(self, name, import_path, target=None):
        if name != TRAINER_MODULE:
            return None
        sys.meta_path.remove(self)  # once, and the regular finders find the module itself
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            execute(module)
            _record_first_step(module.Trainer, self.path)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("FIRST_STEP_FILE"):
    sys.meta_path.insert(0, _PatchWhenImported(os.environ["FIRST_STEP_FILE"]))
