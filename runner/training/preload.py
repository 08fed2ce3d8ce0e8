"""The training stack, imported once per process: ahead of the first run in an idle worker, else by that run.

Importing torch and the transformers Trainer is most of the seconds between claiming a run and its first
training step, and the same for every run, so a worker pays it once, while it waits for work. What only some
runs need (peft, trl, bitsandbytes, lm-eval, datasets) stays with the code that uses it.

Once imported, the modules' objects (several hundred thousand of them) are frozen out of the garbage
collector's sight (gc.freeze): they live as long as the process anyway, and otherwise every full collection
walks them all, the one Trainer.train() starts with included (about 0.4 s on a CPU, inside the training time).
This is done before a run loads anything, so nothing a run allocates is ever frozen.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def import_training_stack() -> None:
    """Import what every training run uses: torch, and the transformers Trainer, its arguments, the model and
    tokenizer auto classes and the padding collator (transformers loads these lazily, on first access)."""
    import torch  # noqa: F401
    import transformers

    for name in ("Trainer", "TrainingArguments", "AutoModelForCausalLM", "AutoTokenizer", "DataCollatorForSeq2Seq",
                 "set_seed"):
        getattr(transformers, name)


def prepare_process() -> None:
    """Make this process ready to train: the stack imported (a no-op when done) and its objects frozen, once.

    Call it before a run creates anything: whatever is alive at the first call stays out of collections for
    good, so it must be the process's own long-lived state, not a run's.
    """
    global _frozen
    import_training_stack()
    with _lock:
        if not _frozen:
            gc.freeze()
            _frozen = True
