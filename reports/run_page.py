"""The run page view model: spec, lineage, environment, checkpoints, curves, per-subject MMLU, fingerprint; for online
RL its reward source, reward, KL and completion-length curves and sample completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from tunelab.experiments.benchmarks import REWARD_ACCURACY, display_order
from tunelab.experiments.toml_text import spec_toml
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.queries import MemberScore, RunDetail, member_scores, run_details
from tunelab.registry.reward_sources import RewardRecord
from tunelab.registry.samples import SamplePair
from tunelab.registry.scores import Score, headline_rows
from tunelab.reports.charts import Chart, Series, bar_spec, line_spec
from tunelab.reports.data_stats import DataSourceLine, data_source_lines, overlength_note
from tunelab.reports.eval_settings import not_comparable_note
from tunelab.reports.marks import SIGNIFICANCE_LEVEL, delta_class, delta_text, significant
from tunelab.reports.scores import SubjectDelta, group_scores, subject_deltas

# Runs per batch of queries: bounds memory on a large registry.
_BATCH = 200
# A run's group member scores (MMLU subjects): full rows from run_detail, or index-only ones for reports.
Members = list[MemberScore] | list[Score]


@dataclass
class ScoreLine:
    task: str
    metric: str
    value: float
    base: float | None
    delta: float | None
    stderr: float | None
    num_fewshot: int
    comparable: bool
    p_value: float | None = None  # McNemar exact test against the base, from the per-item logs
    note: str = ""  # why it is not leaderboard-comparable

    @property
    def delta_text(self) -> str:
        return delta_text(self.delta)

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta)

    @property
    def significant(self) -> bool:
        return significant(self.p_value)


@dataclass(frozen=True)
class SampleLine:
    """A completion online RL generated at `step`, its prompt and its reward (shown escaped, as text)."""

    step: int
    prompt: str
    completion: str
    reward: float | None

    @property
    def reward_text(self) -> str:
        return "" if self.reward is None else f"{self.reward:.4f}"


@dataclass
class RunPage:
    run_id: int
    name: str
    status: str
    method: str
    base_model: str
    description: str
    tags: list[str]
    error: str | None
    resolved_toml: str  # what the run used: the resolved spec (extends merged, sweep point applied, defaults in)
    spec_file: str  # the spec file as written (a sweep's file holds its [sweep] table)
    spec_path: str
    facts: list[tuple[str, str]]
    checkpoints: list[dict]
    scores: list[ScoreLine]
    # by name: "loss", "lr", "mmlu", online RL's "reward", "kl", "completion_length" (those with points to show)
    charts: dict[str, Chart]
    fingerprint_json: str
    environment_json: str | None = None
    lineage: list[str] = field(default_factory=list)
    # MMLU subjects, base against fine-tuned, worst change first: where fine-tuning made the model forget.
    forgetting: list[SubjectDelta] = field(default_factory=list)
    data_sources: list[DataSourceLine] = field(default_factory=list)
    data_note: str | None = None  # why over-length rows were dropped, where that needs saying
    significance_level: float = SIGNIFICANCE_LEVEL  # a delta with a p-value below it is marked
    # Online RL: what scored the completions (registry/reward_sources.py RewardRecord.describe), the judge's question,
    # and completions kept at a few steps.
    reward_source: str | None = None
    judge_template: str | None = None
    completions: list[SampleLine] = field(default_factory=list)
    # [eval.samples]: prompt, reference, base and fine-tuned output side by side (escaped by the template).
    samples: list[SamplePair] = field(default_factory=list)

    @property
    def samples_settings(self) -> str:
        """The generation settings the samples were written with, as `key = value` pairs."""
        settings = self.samples[0].settings if self.samples else {}
        return ", ".join(f"{key} = {json.dumps(value)}" for key, value in sorted(settings.items()))

    @property
    def any_p_value(self) -> bool:
        return any(s.p_value is not None for s in self.scores)


def _score_lines(detail: RunDetail) -> list[ScoreLine]:
    tuned, base = headline_rows(detail.scores, "finetuned"), headline_rows(detail.scores, "base")
    lines = []
    for task in display_order(tuned):
        row, base_row = tuned[task], base.get(task)
        lines.append(ScoreLine(task, row.metric, row.value, base_row.value if base_row else None,
                               row.value - base_row.value if base_row else None, row.stderr, row.num_fewshot,
                               row.comparable, row.vs_base_p if base_row else None, not_comparable_note(row)))
    return lines


def _mmlu_chart(members: Members) -> Chart | None:
    tuned = group_scores(members, "finetuned")
    base = group_scores(members, "base")
    subjects = sorted(tuned)
    reference = [base.get(s) for s in subjects] if base else None
    labels = [s.removeprefix("mmlu_").replace("_", " ") for s in subjects]
    return bar_spec(labels, [tuned[s] for s in subjects], title="MMLU per subject (acc)", xlabel="accuracy",
                    reference=reference)


def loss_series(detail: RunDetail, label: str = "training loss") -> Series:
    points = [(m["step"], m["loss"]) for m in detail.metrics if m["loss"] is not None]
    return Series(label, [p[0] for p in points], [p[1] for p in points])


def validation_series(detail: RunDetail, label: str = "validation loss") -> Series:
    """Loss on the held-out validation examples, logged during training on rows of its own."""
    points = [(m["step"], m["eval_loss"]) for m in detail.metrics if m.get("eval_loss") is not None]
    return Series(label, [p[0] for p in points], [p[1] for p in points])


def _metric_series(detail: RunDetail, name: str, label: str) -> Series:
    points = [(m["step"], m[name]) for m in detail.metrics if m.get(name) is not None]
    return Series(label, [p[0] for p in points], [p[1] for p in points])


def reward_series(detail: RunDetail) -> list[Series]:
    """Online RL's mean reward per step, and one standard deviation either side (the spread of the completions)."""
    points = [(m["step"], m["reward"], m.get("reward_std")) for m in detail.metrics if m.get("reward") is not None]
    spread = [(step, mean, std) for step, mean, std in points if std is not None]
    return [Series("mean reward", [p[0] for p in points], [p[1] for p in points]),
            Series("mean - std", [p[0] for p in spread], [p[1] - p[2] for p in spread]),
            Series("mean + std", [p[0] for p in spread], [p[1] + p[2] for p in spread])]


def _rl_charts(detail: RunDetail) -> dict[str, Chart | None]:
    return {
        "reward": line_spec(reward_series(detail), title="Reward per step (mean, and one standard deviation either "
                            "side)", xlabel="step", ylabel="reward"),
        "kl": line_spec([_metric_series(detail, "kl", "KL to the reference")], title="KL divergence to the "
                        "reference model", xlabel="step", ylabel="KL"),
        "completion_length": line_spec([_metric_series(detail, "completion_length", "mean completion length")],
                                        title="Completion length", xlabel="step", ylabel="tokens"),
    }


def _members(detail: RunDetail) -> list[Score]:
    return [row for row in detail.scores if row.task_group is not None]


def page_charts(detail: RunDetail, members: Members | None = None) -> dict[str, Chart]:
    """What each chart of the run page plots, by name; a chart with nothing to show is left out.

    `members`: the run's MMLU subject scores, when `detail` was read without them.
    """
    members = _members(detail) if members is None else members
    validation = validation_series(detail)
    loss_title = "Training and validation loss" if validation.x else "Training loss"
    lr = [(m["step"], m["learning_rate"]) for m in detail.metrics if m["learning_rate"] is not None]
    charts = {
        "loss": line_spec([loss_series(detail), validation], title=loss_title, xlabel="step", ylabel="loss"),
        "lr": line_spec([Series("learning rate", [p[0] for p in lr], [p[1] for p in lr])],
                        title="Learning rate", xlabel="step", ylabel="lr"),
        "mmlu": _mmlu_chart(members),
        **_rl_charts(detail),
    }
    return {name: chart for name, chart in charts.items() if chart is not None}


def _page(detail: RunDetail, members: Members) -> RunPage:
    s = detail.summary
    facts = [
        ("experiment", str(s.experiment_id)),
        ("spec file", detail.spec_path),
        ("spec hash", detail.spec_hash),
        ("submitted from", detail.workdir),
        ("output", detail.output_dir or "-"),
        ("created", s.created_at.isoformat(timespec="seconds") if s.created_at else "-"),
        ("finished", s.finished_at.isoformat(timespec="seconds") if s.finished_at else "-"),
        ("training examples", str(detail.num_train_examples) if detail.num_train_examples is not None else "-"),
        ("train time", f"{detail.train_seconds:.1f} s" if detail.train_seconds is not None else "-"),
        ("final loss", f"{s.final_loss:.4f}" if s.final_loss is not None else "-"),
    ]
    if detail.validation_loss is not None:
        facts.append(("validation loss", f"{detail.validation_loss:.4f} (the last validation point)"))
    if detail.best_step is not None:
        facts.append(("final weights", f"best checkpoint by validation loss: step {detail.best_step}"))
    if s.reproduces_run_id is not None:
        facts.append(("reproduces", f"run {s.reproduces_run_id} (made by tunelab reproduce)"))
    reward = RewardRecord.from_json(detail.reward_source) if detail.reward_source else None
    if reward is not None:
        facts.append(("reward", reward.describe()))
    accuracy = headline_rows(detail.scores, "finetuned").get(REWARD_ACCURACY)
    if accuracy is not None:
        facts.append(("held-out pairwise accuracy", f"{accuracy.value:.4f} ({accuracy.n_samples} pairs)"))
    fingerprint = next((r.fingerprint for r in detail.scores if r.model_kind == "finetuned"), {})
    environment = detail.environment
    base_subjects = group_scores(members, "base")
    return RunPage(
        run_id=s.run_id, name=s.name, status=s.status, method=s.method, base_model=s.base_model,
        description=detail.spec.get("experiment", {}).get("description", ""), tags=s.tags, error=s.error,
        resolved_toml=spec_toml(detail.spec), spec_file=detail.spec_text, spec_path=detail.spec_path, facts=facts,
        checkpoints=detail.checkpoints, scores=_score_lines(detail), charts=page_charts(detail, members),
        fingerprint_json=json.dumps(fingerprint, indent=2, sort_keys=True),
        environment_json=json.dumps(environment, indent=2, sort_keys=True) if environment else None,
        lineage=[f"base model {s.base_model}"] + ([f"trained against {reward.describe()}"] if reward else []),
        forgetting=subject_deltas(base_subjects, group_scores(members, "finetuned")) if base_subjects else [],
        data_sources=data_source_lines(detail.data_stats),
        data_note=overlength_note(detail.data_stats, detail.spec.get("data", {})),
        reward_source=reward.describe() if reward else None, judge_template=reward.template if reward else None,
        completions=[SampleLine(**sample) for sample in detail.completions],
        samples=detail.samples,
    )


def build_run_pages(registry: Registry, run_ids: list[int]) -> Iterator[RunPage]:
    """The pages of `run_ids` (those that exist), in batches: a few queries per batch."""
    for start in range(0, len(run_ids), _BATCH):
        batch = run_ids[start:start + _BATCH]
        details = run_details(registry, batch, group_members=False)
        members = member_scores(registry, batch)
        for run_id in batch:
            if run_id in details:
                yield _page(details[run_id], members.get(run_id, []))


def build_run_page(registry: Registry, run_id: int) -> RunPage:
    for page in build_run_pages(registry, [run_id]):
        return page
    raise NotFound(f"no run with id {run_id}")
