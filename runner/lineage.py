"""Sequential fine-tuning: `model.base = "run:ID"` starts from the final weights of an earlier run.

A run whose final weights are a whole model (full, freeze, dpo over all weights) is used as it is; a LoRA
adapter (lora, qlora, dpo with LoRA) is merged into its own base first, recursively, into the new run's
output directory. Every run records its lineage: the runs its starting weights came from, nearest first,
and the original base model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tunelab.experiments.schema import RUN_BASE, Spec, stored_spec
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.lineage import Ancestor, Lineage
from tunelab.registry.queries import experiment_for_run
from tunelab.registry.recording import update_run
from tunelab.registry.roots import ProjectRootMissing, Roots
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoints import fsync_tree
from tunelab.runner.training.final_weights import is_finished
from tunelab.runner.training.methods import trains_adapter
from tunelab.runner.training.models import load_tokenizer, locate_model, merged_model, resolve_model_path

# Deeper than any real chain; only a hand-made loop in the registry could reach it.
MAX_DEPTH = 100


def run_base_id(base: str) -> int | None:
    """The run id of a `run:ID` base; None for a directory or hub id."""
    match = RUN_BASE.fullmatch(base)
    return int(match.group(1)) if match else None


def _run_and_spec(registry: Registry, run_id: int, context: str):
    try:
        run, experiment = experiment_for_run(registry, run_id)
    except NotFound:
        raise RunFailed(f"{context}: there is no run {run_id}") from None
    return run, experiment, stored_spec(experiment.resolved_json)


def submit_dir(roots: Roots, stored: str) -> Path:
    """An experiment's stored submit directory as this machine sees it (registry/roots.py); a RunFailed when it
    hangs from a project root this machine does not name."""
    try:
        return roots.workdir(stored)
    except ProjectRootMissing as exc:
        raise RunFailed(str(exc)) from None


def _local_or_hub(base: str, workdir: Path) -> str:
    location = locate_model(base, workdir)
    return str(location.path) if location.kind == "directory" else base


def lineage_of(registry: Registry, base: str, workdir: Path, roots: Roots, *, run_id: int | None = None) -> Lineage:
    """Follow run:ID bases back to a model that is not a run. `run_id` (the run starting from `base`)
    must not appear in its own chain."""
    runs: list[Ancestor] = []
    seen = {run_id} if run_id is not None else set()
    while (parent := run_base_id(base)) is not None:
        if parent in seen or len(runs) >= MAX_DEPTH:
            raise RunFailed(f'model.base = "run:{parent}" makes a loop: run {parent} is its own ancestor')
        seen.add(parent)
        _, experiment, spec = _run_and_spec(registry, parent, f'model.base = "{base}"')
        runs.append(Ancestor(parent, experiment.name, spec.method.kind))
        base, workdir = spec.model.base, submit_dir(roots, experiment.workdir)
    return Lineage(origin=_local_or_hub(base, workdir), runs=runs)


def final_weights(registry: Registry, run_id: int, roots: Roots, *,
                  context: str | None = None) -> tuple[Path, Spec, Path]:
    """The final weights directory of a succeeded run as this machine sees it (under its artifact root), with its
    spec and submit directory.

    `context` starts the error messages (default: the run as a model.base)."""
    context = context or f'model.base = "run:{run_id}"'
    run, experiment, spec = _run_and_spec(registry, run_id, context)
    if run.status != "succeeded":
        raise RunFailed(f"{context}: run {run_id} is {run.status}; only a succeeded run has final weights")
    final = roots.artifact(run.output_dir or "") / "final"
    if not run.output_dir or not is_finished(final):
        raise RunFailed(f"{context}: run {run_id} has no final weights at {final}")
    return final, spec, submit_dir(roots, experiment.workdir)


def base_model_dir(registry: Registry, base: str, workdir: Path, roots: Roots, *, scratch: Path) -> str:
    """A spec's model.base as something `from_pretrained` loads: a directory or hub id, or for run:ID
    the run's whole final model (merging adapters into `scratch` where needed)."""
    run_id = run_base_id(base)
    if run_id is None:
        return resolve_model_path(base, workdir)
    return str(starting_weights(registry, run_id, roots, scratch=scratch))


def starting_weights(registry: Registry, run_id: int, roots: Roots, *, scratch: Path) -> Path:
    """Run `run_id`'s final weights as a whole model directory: its final/ itself, or its adapter merged
    into its base under `scratch` (kept there, so a resumed run merges once). Call `lineage_of` first:
    it refuses loops."""
    final, spec, workdir = final_weights(registry, run_id, roots)
    if spec.method.kind == "reward":
        raise RunFailed(f'run:{run_id} is a reward model (a base with a scalar head), which scores text and does not '
                        'write it: start from, or judge with, a language model (a reward run is named by an RL run\'s '
                        'method.reward_model)')
    if not trains_adapter(spec.method):
        return final
    if spec.method.kind == "prompt_tuning":
        raise RunFailed(f'model.base = "run:{run_id}": run {run_id} is prompt tuning, whose virtual tokens cannot '
                        "be merged into weights; start from a full, freeze, lora or qlora run")
    merged = scratch / f"run-{run_id}"
    if merged.is_dir():  # written whole: staged, then renamed into place
        return merged
    model = merged_model(base_model_dir(registry, spec.model.base, workdir, roots, scratch=scratch), final,
                         spec.model.dtype)
    save_whole(model, load_tokenizer(str(final)), merged)
    return merged


def save_whole(model, tokenizer, destination: Path) -> None:
    """Save model and tokenizer to a staging directory, then rename it to `destination`."""
    staging = destination.with_name(destination.name + ".staging")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        fsync_tree(staging)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RunFailed(f"cannot write {destination}: {exc.strerror or exc}") from None


def resolve_start(registry: Registry, run_id: int, spec: Spec, *, workdir: Path, output_dir: Path,
                  roots: Roots, held_by: str | None = None) -> Spec:
    """Record the run's lineage; for a run:ID base, return the spec with model.base pointing at the
    directory of that run's final weights (the spec stored in the registry keeps run:ID)."""
    lineage = lineage_of(registry, spec.model.base, workdir, roots, run_id=run_id)
    update_run(registry, run_id, held_by=held_by, lineage_json=json.dumps(lineage.to_json(), sort_keys=True))
    parent = run_base_id(spec.model.base)
    if parent is None:
        return spec
    start = starting_weights(registry, parent, roots, scratch=output_dir / "base")
    return spec.model_copy(update={"model": spec.model.model_copy(update={"base": str(start)})})
