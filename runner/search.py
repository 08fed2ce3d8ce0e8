"""A search's trials drawn and judged by Optuna, over the registry's record of the search.

The registry is the one source of truth: a search's trials are rows of its own tables (registry/searches.py)
linked to ordinary experiments and runs, whose status, scores and validation losses say what each trial did
(registry/search_records.py). Optuna brings the algorithms only: for every decision an in-memory study is rebuilt
from that record (a few milliseconds for hundreds of trials) and asked once. Optuna's own database storage is not
used: it keeps its schema version in the same `alembic_version` table as the registry, so the two cannot share a
database, and a second store would be a second truth to keep in step with the runs.

- ask: an idle worker (runner/worker.py) adds the next trial of a search that wants one and claims its run in
  the same transaction; N workers run N trials at once, and a new trial is drawn only when one is wanted.
- tell: nothing to write, the run is the result; when a trial ends its worker checks whether the search is over
  (enough trials, budget spent) and refreshes the parameter importance the reports show.
- prune: at each validation loss the trial's worker asks the pruner, over every trial's validation losses.

Each draw's sampler is seeded with the search's seed and the trial's number, so the same seed gives the same
trials whatever the worker that draws them (for TPE, given the same finished trials).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from tunelab.experiments.canonical import canonical_json, resolved_dict, spec_hash
from tunelab.experiments.schema import NotifySection, Spec
from tunelab.experiments.search import Distribution, SearchSection
from tunelab.experiments.sweep import apply_point
from tunelab.registry.db import Registry
from tunelab.registry.models import utcnow
from tunelab.registry.run_status import RunStatus
from tunelab.registry.search_records import SearchRecord, TrialRecord, search_record, trial_of_run
from tunelab.registry.searches import (
    add_trial,
    base_spec,
    finish_search,
    open_search_ids,
    record_importance,
    record_pruner_state,
)
from tunelab.registry.submissions import NewExperiment
from tunelab.runner.notify import Event, notify, targets_of

log = logging.getLogger(__name__)
_ASK_ATTEMPTS = 20


def definition_of(record: SearchRecord) -> SearchSection:
    return SearchSection.model_validate(record.definition)


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number`: fixed by the search's seed and the number alone."""
    return (seed * 1_000_003 + number * 7_919 + 1) % 2**32


# ---------------------------------------------------------------- Optuna's view of a search

def _quiet():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _encode(distribution: Distribution, value: Any) -> Any:
    # Optuna's choices must be plain scalars; a list-valued choice (target_modules) travels as its JSON text.
    return json.dumps(value, sort_keys=True) if distribution.choices is not None else value


def _decode(distribution: Distribution, value: Any) -> Any:
    return json.loads(value) if distribution.choices is not None else value


def distributions(definition: SearchSection) -> dict[str, Any]:
    """The search's parameters as Optuna distributions."""
    optuna = _quiet()
    found: dict[str, Any] = {}
    for key, d in definition.params.items():
        if d.choices is not None:
            found[key] = optuna.distributions.CategoricalDistribution([_encode(d, c) for c in d.choices])
        elif d.is_int:
            found[key] = optuna.distributions.IntDistribution(int(d.low), int(d.high), log=d.log,
                                                              step=int(d.step or 1))
        else:
            found[key] = optuna.distributions.FloatDistribution(d.low, d.high, log=d.log, step=d.step)
    return found


def _sampler(definition: SearchSection, number: int):
    optuna = _quiet()
    seed = trial_seed(definition.seed, number)
    if definition.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running count as bad guesses near their parameters, so parallel workers
    # do not all draw next to the same best trial.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=definition.startup_trials, constant_liar=True)


def _frozen(optuna, state, *, params: dict[str, Any] | None = None, dists: dict[str, Any] | None = None,
            value: float | None = None, intermediate: dict[int, float] | None = None,
            system_attrs: dict[str, Any] | None = None):
    return optuna.trial.create_trial(state=state, value=value, params=params or {}, distributions=dists or {},
                                     intermediate_values=intermediate or {}, system_attrs=system_attrs or {})


def _history_study(definition: SearchSection, trials: list[TrialRecord], sampler=None):
    """An in-memory study holding the search's trials as Optuna sees them, for the sampler."""
    optuna = _quiet()
    dists = distributions(definition)
    study = optuna.create_study(direction="maximize" if definition.maximize else "minimize", sampler=sampler)
    TrialState = optuna.trial.TrialState
    # The pruner ranks validation losses (lower is better); as a sampler's hint they keep that order.
    sign = -1.0 if definition.maximize else 1.0
    for trial in trials:
        try:
            params = {k: _encode(definition.params[k], v) for k, v in trial.params.items() if k in dists}
        except KeyError:
            continue
        used = {k: dists[k] for k in params}
        if trial.status == RunStatus.succeeded.value and trial.objective is not None:
            frozen = _frozen(optuna, TrialState.COMPLETE, params=params, dists=used, value=trial.objective)
        elif trial.status == RunStatus.pruned.value:
            frozen = _frozen(optuna, TrialState.PRUNED, params=params, dists=used,
                             intermediate={s: sign * v for s, v in trial.val_losses.items()})
        elif trial.status in (RunStatus.queued.value, RunStatus.running.value):
            frozen = _frozen(optuna, TrialState.RUNNING, params=params, dists=used)
        else:
            frozen = _frozen(optuna, TrialState.FAIL, params=params, dists=used)
        study.add_trial(frozen)
    return study


def suggest(definition: SearchSection, number: int, trials: list[TrialRecord]) -> dict[str, Any]:
    """The parameters of trial `number`, given the trials so far."""
    if definition.sampler == "grid":
        return definition.grid_point(number)
    study = _history_study(definition, trials, _sampler(definition, number))
    asked = study.ask(distributions(definition))
    return {key: _decode(definition.params[key], value) for key, value in asked.params.items()}


def preview(definition: SearchSection, count: int) -> list[dict[str, Any]]:
    """The first `count` trials a fresh search draws when none has finished yet (submit --dry-run)."""
    drawn: list[TrialRecord] = []
    for number in range(min(count, definition.target_trials)):
        params = suggest(definition, number, drawn)
        drawn.append(TrialRecord(number=number, experiment_id=0, name="", params=params, pruner_state={},
                                 status=RunStatus.running.value))
    return [t.params for t in drawn]


def importance(record: SearchRecord) -> dict[str, float] | None:
    """fANOVA importance of each parameter for the objective, over the trials that have one; None with fewer
    than three, or when no parameter varied."""
    definition = definition_of(record)
    scored = [t for t in record.trials if t.objective is not None]
    if len(scored) < 3:
        return None
    optuna = _quiet()
    study = _history_study(definition, scored)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=definition.seed))
    except (RuntimeError, ValueError) as exc:  # too few distinct values to split on
        log.info("search %s: no parameter importance (%s)", record.search_id, exc)
        return None
    return {key: float(value) for key, value in found.items()}


# ---------------------------------------------------------------- when to ask, and when it is over

@dataclass(frozen=True)
class NextStep:
    action: str  # "ask" | "wait" (enough trials in flight, or the last ones still running) | "finish"
    reason: str = ""


def next_step(record: SearchRecord, definition: SearchSection, now: datetime) -> NextStep:
    """What a search needs now: another trial, nothing, or to be marked finished (with why)."""
    reason = ""
    if record.done >= definition.target_trials:
        reason = f"all {definition.target_trials} trials finished"
    elif record.asked >= definition.trial_cap:
        reason = f"max_trials ({definition.trial_cap}) reached"
    elif definition.max_hours is not None and now - record.created_at >= timedelta(hours=definition.max_hours):
        reason = f"max_hours ({definition.max_hours:g}) reached"
    elif definition.max_gpu_hours is not None and record.gpu_hours >= definition.max_gpu_hours:
        reason = f"max_gpu_hours ({definition.max_gpu_hours:g}) reached"
    if reason:
        return NextStep("wait" if record.in_flight else "finish", reason)
    if record.done + record.in_flight >= definition.target_trials:
        return NextStep("wait")
    return NextStep("ask")


def trial_experiment(registry: Registry, record: SearchRecord, number: int, params: dict[str, Any]) -> NewExperiment:
    """Trial `number`'s experiment: the search's spec with `params` applied. A spec that does not validate is still
    stored (as written), so that its run fails with the reason and the search goes on."""
    name = f"{record.name}/search-{record.search_id}/trial-{number}"
    base, spec_text = base_spec(registry, record.search_id)
    raw = apply_point(base, params)
    raw = {**raw, "experiment": {**raw.get("experiment", {}), "name": name}}
    try:
        spec = Spec.model_validate(raw)
        resolved, digest, tags = canonical_json(resolved_dict(spec)), spec_hash(spec), list(spec.experiment.tags)
        nodes = spec.resources.nodes
    except ValidationError:
        resolved = canonical_json(raw)
        # Unique like every spec hash (the registry's index demands it): the trial's name is in `resolved`.
        digest, tags, nodes = "invalid:" + hashlib.sha256(resolved.encode("utf-8")).hexdigest(), [], 1
    return NewExperiment(name=name, description=f"trial {number} of search {record.search_id}", tags=tags,
                         spec_path=record.spec_path, spec_text=spec_text, resolved_json=resolved, spec_hash=digest,
                         workdir=record.workdir, priority=record.priority, gpus=record.gpus, nodes=nodes)


def ask_trial(registry: Registry, worker: str, *, max_gpus: int | None = None,
              notify_also: NotifySection | None = None) -> int | None:
    """Add the next trial of the first search that wants one, its run claimed for `worker`; the run id, or None.

    Searches found over (enough trials, budget spent) with nothing in flight are marked finished on the way and
    told to their [notify] and to `notify_also`.
    """
    for search_id in open_search_ids(registry):
        for _ in range(_ASK_ATTEMPTS):
            record = search_record(registry, search_id)
            definition = definition_of(record)
            step = next_step(record, definition, utcnow())
            if step.action == "finish":
                _finish(registry, record, step.reason, notify_also)
                break
            if step.action == "wait" or (max_gpus is not None and record.gpus > max_gpus):
                break
            params = suggest(definition, record.asked, record.trials)
            experiment = trial_experiment(registry, record, record.asked, params)
            run_id = add_trial(registry, search_id, number=record.asked, params=params, experiment=experiment,
                               worker=worker)
            if run_id is not None:
                log.info("search %s: trial %s is run %s %s", search_id, record.asked, run_id, params)
                return run_id
            # Another worker added this trial first: read the search again.
    return None


def _finish(registry: Registry, record: SearchRecord, reason: str, notify_also: NotifySection | None) -> None:
    if finish_search(registry, record.search_id, reason):
        log.info("search %s finished: %s", record.search_id, reason)
        finished = search_record(registry, record.search_id)
        best = finished.best
        objective = {"name": finished.objective, "value": best.objective if best else None,
                     "best_trial": best.number if best else None, "best_run": best.run_id if best else None}
        notify(targets_of(base_spec(registry, record.search_id)[0], notify_also),
               Event("search", finished.search_id, finished.name, "finished", objective,
                     {"reason": reason, "trials": len(finished.trials), "done": finished.done}))


def trial_ended(registry: Registry, run_id: int, notify_also: NotifySection | None = None) -> SearchRecord | None:
    """After a trial's run ended (succeeded, failed, pruned): refresh the importance and finish the search when it
    is over (told as `ask_trial` tells it). Its search, or None when the run is no trial."""
    found = trial_of_run(registry, run_id)
    if found is None:
        return None
    record = search_record(registry, found[0])
    record_importance(registry, record.search_id, importance(record))
    step = next_step(record, definition_of(record), utcnow())
    if step.action == "finish":
        _finish(registry, record, step.reason, notify_also)
    return search_record(registry, record.search_id)


# ---------------------------------------------------------------- early stopping

def _pruner(definition: SearchSection, eval_every: int):
    optuna = _quiet()
    if definition.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=definition.pruner_startup_trials, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(eval_every, 1),
                                                  reduction_factor=definition.reduction_factor)


def should_prune(registry: Registry, search_id: int, number: int, eval_every: int) -> bool:
    """Whether trial `number` should stop now, from every trial's validation losses (its own just recorded)."""
    record = search_record(registry, search_id)
    definition = definition_of(record)
    optuna = _quiet()
    TrialState = optuna.trial.TrialState
    # Validation losses are what the pruner compares, lower being better, whatever the search's objective.
    study = optuna.create_study(direction="minimize")
    current = None
    for trial in record.trials:
        if not trial.val_losses:
            continue
        if trial.number == number:
            current = trial
            continue
        if trial.status == RunStatus.succeeded.value:
            frozen = _frozen(optuna, TrialState.COMPLETE, value=trial.val_losses[trial.last_step],
                             intermediate=trial.val_losses, system_attrs=trial.pruner_state)
        elif trial.status == RunStatus.pruned.value:
            frozen = _frozen(optuna, TrialState.PRUNED, intermediate=trial.val_losses,
                             system_attrs=trial.pruner_state)
        elif trial.status in (RunStatus.queued.value, RunStatus.running.value):
            frozen = _frozen(optuna, TrialState.RUNNING, intermediate=trial.val_losses,
                             system_attrs=trial.pruner_state)
        else:
            continue
        study.add_trial(frozen)
    if current is None:
        return False
    study.add_trial(_frozen(optuna, TrialState.RUNNING, intermediate=current.val_losses,
                            system_attrs=current.pruner_state))
    frozen = study.trials[-1]
    decision = _pruner(definition, eval_every).prune(study, frozen)
    state = study.trials[-1].system_attrs
    if state != current.pruner_state:
        record_pruner_state(registry, search_id, number, state)
    return bool(decision)


def pruning_check(registry: Registry, run_id: int, eval_every: int) -> Callable[[int, float], bool] | None:
    """For a trial of a search with a pruner: the question training asks at each validation loss; else None."""
    found = trial_of_run(registry, run_id)
    if found is None:
        return None
    search_id, number = found
    if definition_of(search_record(registry, search_id)).pruner == "none":
        return None

    def check(step: int, val_loss: float) -> bool:
        pruned = should_prune(registry, search_id, number, eval_every)
        if pruned:
            log.info("search %s: trial %s pruned at step %s (validation loss %.4f)", search_id, number, step,
                     val_loss)
        return pruned

    return check
