"""A run's final weights on disk: written to a staging directory and renamed into place, finished facts last.

The facts file (FINAL_FACTS) is what tells a later attempt that training is over: it then skips training
and goes straight to evaluation (runner/training/resume.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoints import disk_failure, fsync_tree

# Written into final/ last: its presence means training finished and the weights are whole.
FINAL_FACTS = "tunelab-train.json"


def is_finished(final_dir: Path) -> bool:
    """Whether training finished and wrote these final weights whole."""
    return (final_dir / FINAL_FACTS).is_file()


def final_facts(final_dir: Path) -> dict[str, Any]:
    """Step, loss, time and identity of the training that wrote `final_dir`."""
    return json.loads((final_dir / FINAL_FACTS).read_text(encoding="utf-8"))


def save_final(model, tokenizer, final_dir: Path, facts: dict[str, Any],
               before_rename: Callable[[], None] | None = None) -> None:
    """Write the final weights to a staging directory, then rename it into place.

    `facts` (step, loss, time) go in last, as FINAL_FACTS: a later attempt that finds them
    skips training and goes straight to evaluation.
    """
    staging = final_dir.with_name(final_dir.name + ".staging")
    try:
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / FINAL_FACTS).write_text(json.dumps(facts), encoding="utf-8")
        fsync_tree(staging)
        if before_rename is not None:
            before_rename()  # raises when the run is no longer ours: the staging copy is dropped below
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(staging, final_dir)
    except Exception as exc:
        reason = disk_failure(exc, final_dir.parent)
        shutil.rmtree(staging, ignore_errors=True)
        if reason is None:
            raise
        raise RunFailed(f"cannot write the final model to {final_dir}: {reason}") from exc


def save_final_once(trainer, tokenizer, final_dir: Path, facts: dict[str, Any],
                    before_rename: Callable[[], None] | None = None) -> None:
    """save_final from the first process only (under torchrun all of them get here), the others waiting."""
    if trainer.is_world_process_zero():
        save_final(trainer.model, tokenizer, final_dir, facts, before_rename=before_rename)
    trainer.accelerator.wait_for_everyone()
