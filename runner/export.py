"""`tunelab export`: a run's final weights as a self-contained model directory with a model card.

Full, freeze and full-weight DPO runs are whole models already; an adapter run exports its adapter (pointing
at its base model) or, with merge, the base with the adapter merged in: a plain transformers model. The
tokenizer goes along, and README.md names the spec, the data fingerprint and the registry's eval results.
The directory is written under a staging name and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.registry.db import Registry
from tunelab.registry.queries import RunDetail, experiment_for_run, run_detail
from tunelab.registry.roots import Roots
from tunelab.registry.scores import headline_rows
from tunelab.runner.errors import RunFailed
from tunelab.runner.lineage import Lineage, base_model_dir, final_weights
from tunelab.runner.training.checkpoints import fsync_tree
from tunelab.runner.training.final_weights import FINAL_FACTS, final_facts
from tunelab.runner.training.methods import trains_adapter
from tunelab.runner.training.models import load_tokenizer, merged_model

# Training bookkeeping and peft's placeholder card stay behind; everything else in final/ is the model.
_LEFT_BEHIND = {FINAL_FACTS, "README.md"}


class ExportError(RunFailed):
    """The run cannot be exported (not finished, no such run, output in the way)."""


@dataclass
class ExportResult:
    run_id: int
    output: Path
    form: str  # "adapter" (loads with peft over `base`), "merged" or "full" (plain transformers models)
    method: str
    base: str | None  # what an adapter loads on: a directory or hub id
    files: list[str] = field(default_factory=list)


def export_run(registry: Registry, run_id: int, output: Path, roots: Roots, *, merge: bool = False) -> ExportResult:
    """Write run `run_id`'s final model (found under this machine's artifact root) to `output` (which must not
    exist, or be empty)."""
    output = Path(output).resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ExportError(f"{output} already exists and is not an empty directory")
    final, spec, workdir = final_weights(registry, run_id, roots, context=f"export of run {run_id}")
    run, _ = experiment_for_run(registry, run_id)
    detail = run_detail(registry, run_id)
    adapter = trains_adapter(spec.method)
    scratch = final.parent / "base"  # where training merged a run:ID base; reused, not redone
    base = base_model_dir(registry, spec.model.base, workdir, roots, scratch=scratch) if adapter else None
    form = "full" if not adapter else "merged" if merge else "adapter"

    staging = output.with_name(output.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if form == "merged":
            _write_merged(final, base, spec.model.dtype, staging)
        else:
            _copy_model_files(final, staging)
            if form == "adapter":
                _point_adapter_at(staging, base)
        card = model_card(detail, form=form, base=base, data_fingerprint=run.data_fingerprint,
                          steps=final_facts(final).get("global_step"))
        (staging / "README.md").write_text(card, encoding="utf-8")
        fsync_tree(staging)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(run_id=run_id, output=output, form=form, method=spec.method.kind, base=base,
                        files=sorted(p.name for p in output.iterdir()))


def _copy_model_files(final: Path, destination: Path) -> None:
    destination.mkdir(parents=True)
    for path in sorted(final.iterdir()):
        if path.name in _LEFT_BEHIND:
            continue
        if path.is_dir():
            shutil.copytree(path, destination / path.name)
        else:
            shutil.copy2(path, destination / path.name)


def _point_adapter_at(adapter_dir: Path, base: str) -> None:
    # Training recorded the base as it was loaded then; the export names it as this machine finds it now.
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_merged(final: Path, base: str, dtype: str, destination: Path) -> None:
    model = merged_model(base, final, dtype)
    model.save_pretrained(destination, safe_serialization=True)
    load_tokenizer(str(final)).save_pretrained(destination)


def model_card(detail: RunDetail, *, form: str, base: str | None, data_fingerprint: str | None,
               steps: int | None) -> str:
    """README.md for an exported model: what it is, how it was trained, how it scored."""
    summary = detail.summary
    spec = detail.spec
    lineage = Lineage.from_json(detail.lineage) if detail.lineage else None
    origin = lineage.origin if lineage else summary.base_model
    library = "peft" if form == "adapter" else "transformers"
    lines = [
        "---",
        f"library_name: {library}",
        f"base_model: {json.dumps(origin)}",
        f"tags: {json.dumps(['tunelab', summary.method] + list(summary.tags))}",
        "---",
        "",
        f"# {summary.name}",
        "",
    ]
    if spec["experiment"].get("description"):
        lines += [spec["experiment"]["description"], ""]
    form_text = {"adapter": f"a peft adapter over `{base}`", "merged": f"the adapter merged into `{base}`",
                 "full": "a whole model"}[form]
    lines += [
        f"Exported from tunelab run {summary.run_id} (experiment {summary.experiment_id}): {form_text}.",
        "",
        "| | |",
        "|---|---|",
        f"| method | {_method_text(spec['method'])} |",
        f"| base model | `{summary.base_model}` |",
    ]
    if lineage and lineage.runs:
        lines.append(f"| lineage | {lineage.describe(summary.run_id)} |")
    lines += [
        f"| trained | {detail.num_train_examples} examples, {steps} steps, final loss {_number(summary.final_loss)} |",
        f"| data fingerprint | `{data_fingerprint or 'not recorded'}` |",
        f"| spec hash | `{detail.spec_hash}` |",
        f"| finished | {summary.finished_at.isoformat() if summary.finished_at else '-'} |",
        "",
        "## Evaluation",
        "",
    ]
    lines += _score_table(detail.scores)
    lines += ["", "## Loading", "", "```python"]
    if form == "adapter":
        lines += ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                  'model = AutoPeftModelForCausalLM.from_pretrained("PATH")']
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("PATH")']
    lines += ['tokenizer = AutoTokenizer.from_pretrained("PATH")', "```", "",
              "## Spec", "", "Resolved (every default filled in), as stored in the registry:", "", "```json",
              json.dumps(spec, indent=2, sort_keys=True), "```", "",
              f"As submitted ({detail.spec_path}):", "", "```toml", detail.spec_text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _method_text(method: dict) -> str:
    options = ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(method.items()) if k != "kind")
    return method["kind"] + (f" ({options})" if options else "")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _score_table(scores) -> list[str]:
    tuned, base = headline_rows(scores, "finetuned", "eval"), headline_rows(scores, "base")
    if not tuned:
        return ["No evaluation results in the registry."]
    lines = ["| task | metric | this model | base | delta | shots | items |", "|---|---|---|---|---|---|---|"]
    for task in sorted(tuned):
        row, reference = tuned[task], base.get(task)
        delta = f"{row.value - reference.value:+.4f}" if reference else "-"
        items = row.n_samples if row.n_samples is not None else "all"
        lines.append(f"| {task} | {row.metric} | {row.value:.4f} | {_number(reference.value if reference else None)} "
                     f"| {delta} | {row.num_fewshot} | {items} |")
    return lines
