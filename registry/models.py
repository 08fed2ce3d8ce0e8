"""The registry's tables. Schema changes go through an Alembic revision in registry/migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel
from tunelab.registry.run_status import RunStatus, SearchStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sweep(SQLModel, table=True):
    """A [sweep] submission: the experiments it expanded to point at it."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    spec_path: str
    definition_json: str
    created_at: datetime = Field(default_factory=utcnow)


class Search(SQLModel, table=True):
    """A [search] submission: the spec its trials start from, and how far it got. Each trial is an experiment
    with one run (SearchTrial links them); what the trials did is read from their runs, never copied here."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    spec_path: str
    spec_text: str
    workdir: str
    # The merged spec without [search] (canonical JSON): a trial is this with its parameters applied.
    base_json: str
    # The [search] table as validated (experiments/search.py SearchSection).
    definition_json: str
    priority: int = 0
    gpus: int = 0
    status: str = Field(default=SearchStatus.running.value, index=True)
    # Trials created so far: the next trial's number. Raised only together with the trial's insert, by a
    # conditional UPDATE, so two workers asking at once never make the same trial.
    asked: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    stop_reason: str | None = None
    # Parameter importance (fANOVA over the finished trials), refreshed whenever a trial ends; for reports.
    importance_json: str | None = None


class SearchTrial(SQLModel, table=True):
    """Trial `number` of a search: its experiment (and run), and the parameters the sampler chose."""

    __tablename__ = "searchtrial"
    __table_args__ = (UniqueConstraint("search_id", "number", name="uq_searchtrial_search_number"),)

    id: int | None = Field(default=None, primary_key=True)
    search_id: int = Field(foreign_key="search.id", index=True)
    number: int
    experiment_id: int = Field(foreign_key="experiment.id", unique=True)
    params_json: str
    # What the pruner keeps between its decisions (successive halving's rungs), written by the trial's worker.
    pruner_json: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})


class Experiment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    sweep_id: int | None = Field(default=None, foreign_key="sweep.id", index=True)
    sweep_point_json: str | None = None
    name: str = Field(index=True)
    description: str = ""
    tags_json: str = "[]"
    spec_path: str
    spec_text: str
    resolved_json: str
    # Unique: one experiment per resolved spec (and where its relative paths point); see registry/submissions.py.
    spec_hash: str = Field(index=True, unique=True)
    # Relative paths in the spec are resolved against the directory submit ran in: stored relative to the project
    # root when submit ran under one, else absolute (registry/roots.py).
    workdir: str
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    status: str = Field(default=RunStatus.queued.value, index=True)
    priority: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    # [resources] gpus, copied from the spec so a claim filters on a column, not on parsed JSON.
    gpus: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    worker: str | None = None
    error: str | None = None
    # Relative to the artifact root of the machine that reads it (registry/roots.py); absolute when written before.
    output_dir: str | None = None
    train_seconds: float | None = None
    final_loss: float | None = None
    num_train_examples: int | None = None
    # Times the run went back to the queue on its own (worker lost, unexpected error); see registry/run_state.py.
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Versions, devices and source commit the run last executed with (runner/environment.py).
    environment_json: str | None = None
    # sha256 of the processed token stream the run trained on (runner/data/fingerprint.py).
    data_fingerprint: str | None = None
    # Set on a run made by `tunelab reproduce`: the run it re-ran.
    reproduces_run_id: int | None = Field(default=None, foreign_key="run.id")
    # What became of the training data's rows: read, empty, duplicates, over-length, held out (runner/data/prepare.py).
    data_stats_json: str | None = None
    # Where the starting weights came from: {"runs": [{run_id, name, method}, ...] nearest first, "origin": base}
    # (runner/lineage.py); runs is empty for a run that starts from a plain base model.
    lineage_json: str | None = None
    # Training's latest figures: {step, total, loss, tokens_per_second, eta_seconds} (runner/training/progress.py).
    progress_json: str | None = None
    # What an online RL run's reward came from: a reward run (with the hash of its weights), a judge model and its
    # template, or a reward function (registry/reward_sources.py RewardRecord); None for other methods.
    reward_source_json: str | None = None
    # The Slurm job (JOBID, or ARRAYJOB_TASK in a job array) and node of the worker that last took the run, when
    # that worker ran as a Slurm job (runner/slurm/job.py); None otherwise.
    slurm_job: str | None = None
    slurm_node: str | None = None
    # [resources] nodes, copied from the spec like gpus: a claim takes only runs the worker's allocation spans.
    nodes: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # [train] load_best: the step whose checkpoint became the final weights (the best validation loss).
    best_step: int | None = None


class Checkpoint(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    step: int
    loss: float | None = None
    path: str  # relative to the artifact root, as Run.output_dir
    created_at: datetime = Field(default_factory=utcnow)


class TrainMetric(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    # Loss on the [data] validation examples; set on rows of their own (loss is then None).
    eval_loss: float | None = None
    # Online RL (rloo, grpo), on rows of their own: the mean reward of the step's completions and its standard
    # deviation, the mean KL to the reference model, the mean completion length in tokens.
    reward: float | None = None
    reward_std: float | None = None
    kl: float | None = None
    completion_length: float | None = None


class CompletionSample(SQLModel, table=True):
    """A completion online RL generated at `step`, with its prompt and reward: a few are kept at a few steps."""

    __tablename__ = "completionsample"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    step: int
    prompt: str
    completion: str
    reward: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EvalResult(SQLModel, table=True):
    """One score of one evaluated model: the run's fine-tuned model, or its base (model_kind="base").

    `tunelab eval` records any model (a run's weights, a local directory, a hub id) as model_kind="eval": with
    the run's id when the target is a run, else with run_id NULL; model_digest names the exact weights.
    """

    # Score look-ups go by run, kind and task (listings, --where on scores): without this the
    # planner may scan by task alone, which is quadratic on a large registry.
    # Reports read through two covering indexes, so they never touch rows heavy with per-item logs: headline
    # scores' p-values (SQLite stores a row's columns in order, and vs_base_p, added after samples_json, is
    # reached in the row only by walking the log's overflow pages) and the values of group members (a run's
    # 57 MMLU subjects, for its page).
    __table_args__ = (
        Index("ix_evalresult_run_kind_task", "run_id", "model_kind", "task"),
        Index("ix_evalresult_group_kind_p", "task_group", "model_kind", "vs_base_p", "run_id", "task",
              "vs_base_ci_low", "vs_base_ci_high"),
        Index("ix_evalresult_run_group_values", "run_id", "task_group", "model_kind", "task", "value"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    model_kind: str = Field(default="finetuned", index=True)
    model_name: str
    task: str = Field(index=True)
    metric: str
    value: float
    stderr: float | None = None
    num_fewshot: int = 0
    limit: int = 0
    n_samples: int | None = None
    task_group: str | None = None
    comparable: bool = True
    lm_eval_version: str = ""
    fingerprint_json: str = "{}"
    samples_json: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    model_digest: str | None = Field(default=None, index=True)
    # A fine-tuned score's McNemar exact p-value against its base model's score, from the two per-item logs
    # (registry/recording.py sets it once both are recorded); None while not yet checked, -1.0
    # (significance.NO_P_VALUE) when checked and no test applies (a log missing, mc2, non-binary items).
    vs_base_p: float | None = None
    # The 95% paired-bootstrap interval of the change against the base (registry/significance.py), set with
    # vs_base_p where both per-item logs have a value per item; None otherwise.
    vs_base_ci_low: float | None = None
    vs_base_ci_high: float | None = None


class EvalCacheEntry(SQLModel, table=True):
    """One benchmark's evaluation result, keyed by everything it depends on (see runner/evaluation/cache.py)."""

    __tablename__ = "evalcache"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)  # sha256 of weights, task definition and data, settings, lm-eval version
    task: str
    model_digest: str = Field(index=True)
    lm_eval_version: str
    payload_json: str  # the scores, per-item logs and fingerprint entry of that benchmark
    created_at: datetime = Field(default_factory=utcnow)


class FileDigest(SQLModel, table=True):
    """sha256 of a model file, remembered by path, size and mtime so large weights are hashed once."""

    __tablename__ = "filedigest"

    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(unique=True, index=True)
    size: int = Field(sa_type=BigInteger)
    mtime_ns: int = Field(sa_type=BigInteger)
    sha256: str


class GeneratedSample(SQLModel, table=True):
    """What one model of a run wrote for one prompt of its [eval.samples] (registry/samples.py reads them back).

    One row per (run, model, prompt): a run's fine-tuned model and its base each answer every prompt; `position`
    pairs their answers. `settings_json` holds the generation settings the text was written with.
    """

    __tablename__ = "generatedsample"
    __table_args__ = (Index("ix_generatedsample_run_kind_position", "run_id", "model_kind", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    model_kind: str  # "finetuned" | "base"
    position: int  # the prompt's place in the run's list of prompts
    prompt: str
    reference: str | None = None
    output: str
    settings_json: str = "{}"
    model_digest: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class GenerationCacheEntry(SQLModel, table=True):
    """A model's outputs for a list of prompts at given settings, keyed by content (runner/evaluation/samples.py)."""

    __tablename__ = "generationcache"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)  # sha256 of weights, prompt tokens, generation settings, versions
    model_digest: str = Field(index=True)
    payload_json: str  # the outputs, in prompt order
    created_at: datetime = Field(default_factory=utcnow)
