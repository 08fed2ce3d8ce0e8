"""One recipe per method family, picked by the spec's `[method] kind`.

supervised (runner/training/supervised.py): full, freeze, lora, qlora and prompt_tuning, on instruction, chat or
text rows; preference (runner/training/preference.py): dpo, on prompt/chosen/rejected rows. Both build their
Trainer from runner/training/trainer.py and resume through runner/training/resume.py.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.runner.data.fingerprint import fingerprint_data
from tunelab.runner.training.methods import check_device
from tunelab.runner.training.models import load_tokenizer, pick_device, resolve_model_path
from tunelab.runner.training.options import check_cuda_options
from tunelab.runner.training.preference import train_preference
from tunelab.runner.training.supervised import train_supervised
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome


def train(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str | None = None) -> TrainOutcome:
    """Train per `spec`; relative paths resolve against `workdir`; files go under `output_dir`.

    Continues from the last complete checkpoint under `output_dir`, if there is one. `device`
    ("cpu" or "cuda"; default: a GPU when there is one) is where the model trains.
    """
    device = device or pick_device()
    check_device(spec, device)
    check_cuda_options(spec, device)
    recipe = train_preference if spec.method.kind == "dpo" else train_supervised
    return recipe(spec, workdir=workdir, output_dir=output_dir, hooks=hooks, device=device)


def fingerprint_spec_data(spec: Spec, workdir: Path) -> str:
    """The data fingerprint a run of `spec` records, without training: the tokenizer alone is loaded, and the data
    prepared as the spec's recipe prepares it."""
    tokenizer = load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision)
    return fingerprint_data(spec, tokenizer, workdir)
