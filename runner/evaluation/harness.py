"""Score an in-memory model on the Open LLM Leaderboard v1 tasks and the spec's custom tasks, through lm-eval.

The approach: lm-eval's own task definitions do the work. For every benchmark we write a small task YAML that
`include:`s the official one from the installed lm-eval and overrides only the task name, the leaderboard's
few-shot count (25 ARC, 10 HellaSwag, 5 MMLU, 0 TruthfulQA) and, when a local benchmarks directory is
given, the data files (`dataset_path: json`). A `TaskManager` over just those YAMLs loads them, every dataset
is loaded before the model runs (so missing data fails in seconds, not after an hour of MMLU), then each
reported task runs through `simple_evaluate` with an `HFLM` wrapping the model, seeded from the spec; the few-shot
examples are drawn with `[eval] fewshot_seed` (the leaderboard's 1234 unless set), never the training seed.

Reporting follows the leaderboard, not lm-eval's defaults: ARC and HellaSwag report `acc_norm`; MMLU is the
unweighted mean over its 57 subjects (lm-eval's `mmlu` group weights by subject size), with one row per
subject; TruthfulQA's MC2 score, which lm-eval calls `acc`, is reported as `mc2`.

The local HellaSwag copy has no train split, so its shots come from the validation split it is scored on;
lm-eval only keeps an item out of its own shots when the few-shot split is the task's test split, so the
generated YAML names validation as the test split too (see LOCAL_LAYOUTS in runner/evaluation/leaderboard.py).
Those scores, every score of a benchmark whose shots the spec changed ([eval.num_fewshot]), every score from a run
with `limit` or another few-shot seed, and every score of a task with items whose prompt was cut to the model's
context (runner/evaluation/truncation.py; counted per task in the fingerprint) are marked `comparable=False`. The
fingerprint's profile is "openllm-v1" only when no leaderboard benchmark departs from the leaderboard's settings,
else "custom", with the departures listed under "deviations".

Tasks of the spec's include_path report their first metric (lm-eval's first when they list none), under its
filter when the task has a filter_list. The model is evaluated on one device (`evaluation_device`), moved there
first if it is elsewhere; the device is part of the fingerprint and of the cache key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunelab.experiments.benchmarks import LEADERBOARD_FEWSHOT_SEED
from tunelab.experiments.schema import EvalSection
from tunelab.registry.scores import Score
from tunelab.runner.devices import CHOSEN_DEVICE, no_gpu_possible
from tunelab.runner.errors import EvaluationError, EvaluationSpecError, RunCancelled
from tunelab.runner.evaluation.include_path import resolve_include_path
from tunelab.runner.evaluation.leaderboard import (
    BENCHMARKS_DIR_ENV,
    profile_of,
    resolve_benchmarks_dir,
    shot_overrides,
)
from tunelab.runner.evaluation.planning import NOTHING_TO_EVALUATE, plan_tasks
from tunelab.runner.evaluation.tasks import GeneratedTask, TaskPlan
from tunelab.runner.evaluation.truncation import truncated_items
from tunelab.runner.offline import hub_offline


@dataclass(frozen=True)
class EvalOutcome:
    scores: list[Score]  # what was measured; recorded_as says whose scores they are
    lm_eval_version: str
    fingerprint: dict  # what must match for two outcomes to be comparable (see _fingerprint)
    samples: dict[str, list[dict]] = field(default_factory=dict)  # per task: doc_id, target, pick, correct, score
    cached: tuple[str, ...] = ()  # benchmarks whose results came from the evaluation cache (runner/evaluation/cache.py)

    def recorded_as(self, *, model_kind: str, model_name: str, eval_key: str,
                    model_digest: str | None = None) -> list[Score]:
        """The scores as the registry records them: whose they are, the settings' key in the fingerprint, and
        each task's per-item log."""
        fingerprint = dict(self.fingerprint, eval_key=eval_key)
        return [replace(score, model_kind=model_kind, model_name=model_name, lm_eval_version=self.lm_eval_version,
                        fingerprint=fingerprint, samples=self.samples.get(score.task), model_digest=model_digest)
                for score in self.scores]


def evaluate(
    model: Any,
    tokenizer: Any,
    settings: EvalSection,
    *,
    workdir: Path,
    base_dir: Path,
    seed: int,
    dtype: str,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EvalOutcome:
    """Evaluate `model` (a transformers causal LM, or a peft model around one) as `settings` asks.

    Relative paths in `settings` resolve against `base_dir`; generated task YAMLs go under `workdir`.
    `dtype` is recorded in the fingerprint only: the model is used as it is. `device` ("cpu", "cuda", "mps") is
    where it is evaluated: it is moved there if needed; None evaluates it where it is. `should_stop` (the run was
    cancelled) is asked before each task and each batch the model scores: RunCancelled.
    """
    say = progress or (lambda message: None)
    benchmarks_dir = resolve_benchmarks_dir(settings, base_dir, os.environ)
    tasks_dir = Path(workdir) / "lm_eval_tasks"
    plans = plan_tasks(settings, benchmarks_dir=benchmarks_dir, base_dir=base_dir, out_dir=tasks_dir)
    if not plans:
        raise EvaluationSpecError(NOTHING_TO_EVALUATE)

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    source = f"local data in {benchmarks_dir}" if benchmarks_dir else "hub datasets"
    say(f"loading {len(plans)} eval task(s) ({source}) ...")
    search = [p for p in (resolve_include_path(settings, base_dir), tasks_dir) if p is not None]
    manager, loaded = _load_tasks(plans, search, benchmarks_dir, hub_offline(os.environ, datasets=True))

    was_training = getattr(model, "training", False)
    device = place_model(model, device)
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
        lm._model_call = _stoppable(lm._model_call, should_stop)  # every batch of every task passes through it
        scores: list[Score] = []
        samples: dict[str, list[dict]] = {}
        task_configs: dict[str, dict] = {}
        truncated: dict[str, int] = {}  # per lm-eval task: items whose prompt was cut to the model's context
        for plan in plans:
            if should_stop():
                raise RunCancelled("cancelled while evaluating")
            limit = plan_limit(plan, settings)
            shots = plan.tasks[0].num_fewshot
            what = f"{len(plan.tasks)} subjects, " if len(plan.tasks) > 1 else ""
            say(f"evaluating {plan.name} ({what}{shots}-shot) ...")
            # lm-eval print()s some progress (the batch size "auto" settles on); stdout is the command's (--json).
            with contextlib.redirect_stdout(sys.stderr):
                results = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=[loaded[task.lm_name] for task in plan.tasks],
                    limit=limit,
                    log_samples=True,
                    random_seed=seed,
                    numpy_random_seed=seed,
                    torch_random_seed=seed,
                    # The leaderboard's shots whatever the training seed: two seeds of one spec see the same prompts.
                    fewshot_random_seed=settings.fewshot_seed,
                    # Without a manager, every call indexes all of lm-eval's thousands of task YAMLs (seconds each).
                    task_manager=manager,
                )
            for task in plan.tasks:
                truncated[task.lm_name] = truncated_items(lm, results["samples"][task.lm_name])
            plan_scores = [
                replace(score, limit=limit or 0)
                for score in _scores(plan, results, limited=limit is not None, truncated=truncated,
                                     other_seed=settings.fewshot_seed != LEADERBOARD_FEWSHOT_SEED)
            ]
            scores += plan_scores
            for task in plan.tasks:
                config = results["configs"][task.lm_name]
                task_configs[task.lm_name] = config
                samples[task.reported] = _compact_samples(
                    task, results["samples"][task.lm_name], config.get("target_delimiter", " "),
                    key=_metric_key(task, results["results"][task.lm_name]),
                    multiple_choice=config.get("output_type") == "multiple_choice",
                )
            cut = sum(truncated[task.lm_name] for task in plan.tasks)
            longer = f" ({cut} item(s) longer than the model's context, cut from the left)" if cut else ""
            say(f"{plan.name}: {plan_scores[0].metric} = {plan_scores[0].value:.4f}{longer}")
    finally:
        model.train(was_training)

    fingerprint = _fingerprint(
        plans, task_configs, truncated, settings=settings, seed=seed, dtype=dtype, device=device,
        local=benchmarks_dir is not None,
    )
    return EvalOutcome(scores=scores, lm_eval_version=lm_eval.__version__, fingerprint=fingerprint, samples=samples)


def _stoppable(model_call: Callable[..., Any], should_stop: Callable[[], bool]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if should_stop():
            raise RunCancelled("cancelled while evaluating")
        return model_call(*args, **kwargs)

    return call


def evaluation_device() -> str:
    """The device evaluations run on here: "cuda" when a GPU is present, else "mps" (Apple), else "cpu"."""
    if os.environ.get(CHOSEN_DEVICE) == "cpu" or no_gpu_possible():
        # Known without importing torch (a second and a half): a cached evaluation stays a look-up.
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def model_device(model: Any) -> str:
    """The device type ("cpu", "cuda", "mps") a model's weights are on (the first weight's, if spread)."""
    first = next(iter(model.parameters()), None)
    return first.device.type if first is not None else "cpu"


def place_model(model: Any, device: str | None) -> str:
    """Move `model` to `device` unless it is there already; return the device it is evaluated on."""
    current = model_device(model)
    if device is None or device == current:
        return current
    try:
        model.to(device)
    except (RuntimeError, ValueError) as err:  # quantised or dispatched models refuse to move
        raise EvaluationError(f"cannot move the model from {current} to {device} to evaluate it: {err}") from err
    return device


def plan_limit(plan: TaskPlan, settings: EvalSection) -> int | None:
    """Items per lm-eval task: a custom task's own `limit` wins over `[eval] limit`; 0 means all."""
    custom = next((c for c in settings.custom if plan.custom and c.name == plan.name), None)
    limit = custom.limit if custom is not None and custom.limit is not None else settings.limit
    return limit or None


def _load_tasks(
    plans: list[TaskPlan], search: list[Path], benchmarks_dir: Path | None, offline: bool
) -> tuple[Any, dict[str, Any]]:
    """Build every lm-eval task (which loads its dataset), turning data problems into one clear EvaluationError.

    `search` is the spec's include_path (when set) and the directory of generated YAMLs, which wins on a clash.
    Returns the task manager too, so each `simple_evaluate` reuses it.
    """
    from lm_eval.tasks import TaskManager

    # Only these directories: our YAMLs include the official ones by absolute path, and indexing all of lm-eval
    # takes seconds.
    manager = TaskManager(include_path=[str(path) for path in search], include_defaults=False)
    loaded: dict[str, Any] = {}
    for plan in plans:
        try:
            loaded |= manager.load([task.lm_name for task in plan.tasks])["tasks"]
        except Exception as err:  # datasets raises many kinds; each is re-raised with the task and a remedy
            raise EvaluationError(_load_failure(plan, benchmarks_dir, offline, err)) from err
    return manager, loaded


def _load_failure(plan: TaskPlan, benchmarks_dir: Path | None, offline: bool, err: Exception) -> str:
    if plan.custom:
        files = ", ".join(str(f) for f in plan.tasks[0].data_files)
        return f"could not load custom task {plan.name} from {files}: {err}"
    if plan.included:
        hub = " (hub access is off: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)" if offline else ""
        return f"could not load task {plan.name} of include_path{hub}: {type(err).__name__}: {err}"
    if benchmarks_dir is not None:
        return f"could not load {plan.name} from {benchmarks_dir}: {type(err).__name__}: {err}"
    if offline:
        return (
            f"{plan.name}: the hub dataset is not in the local cache and hub access is off (HF_DATASETS_OFFLINE / "
            f"HF_HUB_OFFLINE); set [eval] benchmarks_dir or {BENCHMARKS_DIR_ENV} to a local copy of the "
            "benchmarks (the layout of examples/benchmarks), or go online once to fill the cache"
        )
    return (
        f"could not load the hub dataset for {plan.name} ({type(err).__name__}: {err}); set [eval] benchmarks_dir "
        f"or {BENCHMARKS_DIR_ENV} to a local copy of the benchmarks"
    )


def _scores(plan: TaskPlan, results: dict, *, limited: bool, truncated: dict[str, int], other_seed: bool
            ) -> list[Score]:
    rows = [_task_score(task, results, limited=limited, truncated=truncated.get(task.lm_name, 0),
                        other_seed=other_seed) for task in plan.tasks]
    if plan.name != "mmlu":
        return rows
    # The leaderboard's MMLU is the plain mean over subjects, whatever their sizes.
    values = [row.value for row in rows]
    errors = [row.stderr for row in rows]
    stderr = math.sqrt(sum(e * e for e in errors)) / len(errors) if all(e is not None for e in errors) else None
    aggregate = Score(
        task="mmlu",
        metric=rows[0].metric,
        value=sum(values) / len(values),
        stderr=stderr,
        num_fewshot=rows[0].num_fewshot,
        n_samples=sum(row.n_samples for row in rows),
        task_group=None,
        comparable=plan.complete and all(row.comparable for row in rows),
    )
    return [aggregate, *rows]


def _task_score(task: GeneratedTask, results: dict, *, limited: bool, truncated: int = 0,
                other_seed: bool = False) -> Score:
    metrics = results["results"][task.lm_name]
    shots = results["n-shot"][task.lm_name]
    if shots != task.num_fewshot:
        raise EvaluationError(f"{task.reported} ran {shots}-shot, expected {task.num_fewshot}-shot")
    key = _metric_key(task, metrics)
    name, _, filter_name = key.partition(",")
    stderr = metrics.get(f"{name}_stderr,{filter_name}")
    return Score(
        task=task.reported,
        metric=(task.metric or name) if filter_name == "none" else key,
        value=float(metrics[key]),
        # lm-eval writes "N/A" where it cannot compute one (a single item, say).
        stderr=float(stderr) if isinstance(stderr, int | float) and math.isfinite(stderr) else None,
        num_fewshot=shots,
        n_samples=int(results["n-samples"][task.lm_name]["effective"]),
        task_group=task.task_group,
        # Cut prompts or other shots: the model answered other questions than the leaderboard's.
        comparable=task.leaderboard_settings and not limited and not truncated and not other_seed,
    )


def _metric_key(task: GeneratedTask, metrics: dict) -> str:
    """The "metric,filter" key of lm-eval's results to report: the task's metric, else lm-eval's first one."""
    keys = [k for k in metrics if "," in k and not k.split(",")[0].endswith("_stderr")]
    if task.lm_metric:
        keys = [k for k in keys if k.split(",")[0] == task.lm_metric]
    # Unfiltered first, as lm-eval reports a task without a filter_list.
    keys.sort(key=lambda k: not k.endswith(",none"))
    if not keys:
        raise EvaluationError(f"{task.reported}: lm-eval reported no {task.lm_metric or 'metric'} "
                              f"(it reported: {', '.join(metrics) or 'nothing'})")
    return keys[0]


def _compact_samples(
    task: GeneratedTask, logged: list[dict], target_delimiter: str, *, key: str | None = None,
    multiple_choice: bool = True,
) -> list[dict]:
    """Per item: its index, the gold choice, the model's pick, whether that counts as right, and the item's score.

    `key` is the reported "metric,filter" (default: the task's metric, unfiltered); a task with several filters
    logs each item once per filter. Only a multiple-choice item has a pick and choices.

    `correct` is the item's right/wrong under the reported metric, and None where there is none: a metric computed
    over the whole task (BLEU, F1, MCC: the item's value is not a number), one whose item values are not 0 or 1,
    and MC2 (a probability mass on the true answers). McNemar's test (registry/significance.py) needs it.
    `pick_right` says whether a multiple-choice pick is a right answer (for MC2, one of the true ones), for
    showing flipped items; None without a pick. `score` is lm-eval's own value for the item, when a number.
    """
    metric, _, filter_name = (key or f"{task.lm_metric},none").partition(",")
    logged = [s for s in logged if s.get("filter", "none") == filter_name]
    compact = []
    for sample in sorted(logged, key=lambda s: s["doc_id"]):
        pick = _pick(sample, metric, target_delimiter) if multiple_choice else None
        value = sample.get(metric)
        score = float(value) if isinstance(value, int | float) else None
        binary = task.metric != "mc2" and score in (0.0, 1.0)
        correct = score == 1.0 if binary else None
        if pick is None:
            pick_right = None
        elif task.metric == "mc2":
            pick_right = sample["doc"]["mc2_targets"]["labels"][pick] == 1
        else:
            pick_right = correct if correct is not None else pick == _plain(sample["target"])
        compact.append(
            {
                "doc_id": int(sample["doc_id"]),
                "target": _plain(sample["target"]),
                "pick": pick,
                "correct": correct,
                "pick_right": pick_right,
                "score": score,
                # Enough of the item to show it in a comparison of two models (`tunelab compare`).
                "question": _item_text(sample["doc"]),
                "choices": [_clip(str(arg[1]).strip(), CHOICE_CHARS) for arg in sample["arguments"]]
                if multiple_choice else [],
            }
        )
    return compact


def _pick(sample: dict, metric: str, target_delimiter: str) -> int:
    lls = [float(resp[0]) for resp in sample["filtered_resps"]]
    if metric == "acc_norm":
        # As lm-eval normalises: by the length in characters of each choice (without the target delimiter).
        lengths = [len(arg[1]) - len(target_delimiter) for arg in sample["arguments"]]
        return _argmax([ll / max(n, 1) for ll, n in zip(lls, lengths, strict=True)])
    return _argmax(lls)


QUESTION_CHARS, CHOICE_CHARS = 300, 120
_QUESTION_FIELDS = ("question", "ctx", "query", "goal", "sentence")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _item_text(doc: dict) -> str | None:
    """The question of an item, from the first field the official schemas use for it."""
    for name in _QUESTION_FIELDS:
        if isinstance(doc.get(name), str):
            return _clip(doc[name], QUESTION_CHARS)
    return None


def _argmax(values: list[float]) -> int:
    # First maximum, as numpy.argmax (which lm-eval uses) breaks ties.
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _fingerprint(
    plans: list[TaskPlan], configs: dict[str, dict], truncated: dict[str, int], *, settings: EvalSection, seed: int,
    dtype: str, device: str, local: bool,
) -> dict:
    """Everything that must match for two outcomes' scores to be compared number for number."""
    import lm_eval

    tasks = {}
    for plan in plans:
        first = configs[plan.tasks[0].lm_name]
        entry: dict[str, Any] = {
            "num_fewshot": plan.tasks[0].num_fewshot,
            "fewshot_split": _fewshot_split(first),
            "leaderboard_settings": plan.complete and all(t.leaderboard_settings for t in plan.tasks),
            "config_sha256": _sha256_json([_portable_config(configs[t.lm_name]) for t in plan.tasks]),
            # Hub data is pinned by the dataset name in the config; local files by their content.
            "data_sha256": _sha256_files(files) if (files := [f for t in plan.tasks for f in t.data_files]) else None,
        }
        # Items whose prompt was longer than the model's context (runner/evaluation/truncation.py).
        entry["truncated_items"] = sum(truncated.get(t.lm_name, 0) for t in plan.tasks)
        if len(plan.tasks) > 1:
            entry["subtasks"] = len(plan.tasks)
            if entry["truncated_items"]:
                entry["truncated_by_task"] = {t.reported: truncated[t.lm_name] for t in plan.tasks
                                              if truncated.get(t.lm_name)}
        tasks[plan.name] = entry
    header = fingerprint_header(settings, seed=seed, dtype=dtype, device=device, local=local,
                                lm_eval_version=lm_eval.__version__)
    return with_profile(header, tasks)


def with_profile(header: dict, tasks: dict[str, dict]) -> dict:
    """The whole fingerprint: the shared settings, what the result is (`profile`, and when it is not the
    leaderboard's, the `deviations` that keep it from being so) and each task's entry."""
    profile, deviations = profile_of(header, tasks)
    fingerprint = header | {"profile": profile, "tasks": tasks}
    if deviations:
        fingerprint["deviations"] = deviations
    return fingerprint


def fingerprint_header(
    settings: EvalSection, *, seed: int, dtype: str, device: str, local: bool, lm_eval_version: str
) -> dict:
    """The fingerprint's settings, shared by all its tasks (each task adds its own entry under "tasks")."""
    header = {
        "lm_eval_version": lm_eval_version,
        "data": "local" if local else "hub",
        "limit": settings.limit,
        "batch_size": settings.batch_size,
        "dtype": dtype,
        "device": device,
        "seed": seed,
        "fewshot_seed": settings.fewshot_seed,
    }
    if overrides := shot_overrides(settings):
        header["num_fewshot_overrides"] = overrides
    return header


def _fewshot_split(config: dict) -> str | None:
    """The split a task's shots come from, by lm-eval's rule: fewshot_split, else training, validation, test."""
    if not config.get("num_fewshot"):
        return None
    for key in ("fewshot_split", "training_split", "validation_split", "test_split"):
        if config.get(key):
            return config[key]
    return None


# Keys of lm-eval's dumped task config that name places on this machine; the data hash covers what they point to.
_LOCAL_CONFIG_KEYS = {"task", "dataset_kwargs"}


def _portable_config(config: dict) -> Any:
    portable = {k: v for k, v in config.items() if k not in _LOCAL_CONFIG_KEYS}
    if Path(str(portable.get("dataset_path", ""))).is_absolute():  # a local dataset directory: hashed as data
        portable.pop("dataset_path")
    metadata = {k: v for k, v in (portable.get("metadata") or {}).items() if k != "config_source"}
    portable["metadata"] = metadata
    return portable


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=_stable_repr, ensure_ascii=False)
    # Reprs of functions carry memory addresses; drop them so the hash is the same from run to run.
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stable_repr(value: Any) -> str:
    name = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None)
    return f"{module}.{name}" if name else repr(value)


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        file_digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(file_digest.hexdigest().encode("ascii"))
    return digest.hexdigest()
