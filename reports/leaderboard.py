"""The leaderboard view model: one row per evaluated model, base models included; the points of a sweep or a
search gathered under it, with its best point standing for it when it is collapsed; reward models in a section of
their own."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tunelab.experiments.benchmarks import (
    LEADERBOARD,
    REWARD_ACCURACY,
    display_order,
    leaderboard_average,
    title_of,
)
from tunelab.registry.db import Registry
from tunelab.registry.queries import RunSummary, list_runs, model_evaluations, resolved_specs, run_scores
from tunelab.registry.run_records import RunGroup, run_groups, training_gpus, validation_losses
from tunelab.registry.scores import Score, headline_rows
from tunelab.registry.significance import holm_adjusted
from tunelab.reports.eval_settings import (
    COLUMN_SETTINGS,
    EVAL_KEY,
    average_caveats,
    describe,
    differing,
    model_settings,
    not_comparable_note,
    score_settings,
)
from tunelab.reports.marks import SIGNIFICANCE_LEVEL, delta_class, delta_text, significant


@dataclass
class Cell:
    value: float | None
    delta: float | None = None  # against the row's base model
    stderr: float | None = None
    comparable: bool = True
    settings: dict[str, str] = field(default_factory=dict)  # how it was evaluated (reports/eval_settings.py)
    note: str = ""  # why the cell is marked not comparable
    p_value: float | None = None  # McNemar exact test of the delta, on the per-item logs of both models
    # p_value adjusted by Holm–Bonferroni over every tested cell of the report (set by build_leaderboard).
    p_adjusted: float | None = None
    # 95% paired-bootstrap interval of the delta, from the per-item logs.
    ci: tuple[float, float] | None = None

    @property
    def settings_key(self) -> tuple[str, ...]:
        """What must match for two cells of a column to be ranked together."""
        return tuple(self.settings.get(label, "-") for label in COLUMN_SETTINGS)

    @property
    def text(self) -> str:
        return "" if self.value is None else f"{100 * self.value:.1f}"

    @property
    def significant(self) -> bool:
        """The change against the base is more than chance, among all the changes the report tests."""
        return significant(self.p_adjusted if self.p_adjusted is not None else self.p_value)

    @property
    def ci_text(self) -> str:
        return "" if self.ci is None else f"[{100 * self.ci[0]:+.1f}, {100 * self.ci[1]:+.1f}]"

    @property
    def p_text(self) -> str:
        parts = []
        if self.p_value is not None:
            verdict = "significant" if self.significant else "not significant"
            adjusted = f", Holm-adjusted {self.p_adjusted:.3g}" if self.p_adjusted is not None else ""
            parts.append(f"p = {self.p_value:.3g}{adjusted} ({verdict} at {SIGNIFICANCE_LEVEL}; McNemar's exact "
                         "test against the base)")
        if self.ci is not None:
            parts.append(f"95% interval of the delta {self.ci_text} (paired bootstrap over items)")
        return "; ".join(parts)

    @property
    def delta_text(self) -> str:
        return delta_text(self.delta, digits=1, scale=100)

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta, digits=1, scale=100)


@dataclass
class Row:
    label: str
    kind: str  # "finetuned" | "base" | "eval"
    run_id: int | None
    method: str
    base_model: str
    cells: dict[str, Cell]
    average: Cell
    final_loss: float | None = None
    tags: list[str] = field(default_factory=list)
    href: str | None = None  # the run page, when the report has them
    train_seconds: float | None = None
    num_examples: int | None = None
    settings: str = ""  # key hyperparameters; for a model evaluated at several settings, what differs
    val_loss: float | None = None  # the last validation loss
    reproduces: int | None = None  # the run this run reproduced (`tunelab reproduce`)
    reproduces_href: str | None = None
    base_average: float | None = None  # the base model's average, for the delta of this row's
    eval_settings: dict[str, str] = field(default_factory=dict)  # a base or eval row's evaluation settings
    gpus: int = 0  # GPUs its training used
    group: RunGroup | None = None  # the sweep or search the run is a point of

    @property
    def gain_points(self) -> float | None:
        """Points of leaderboard average gained over the base (positive only)."""
        delta = self.average.delta
        return 100 * delta if delta is not None and delta > 0 else None

    @property
    def cost_text(self) -> str:
        """Train time (and GPU-hours where GPUs were used) per point of average gained over the base."""
        gain = self.gain_points
        if gain is None or self.train_seconds is None:
            return ""
        text = f"{self.train_seconds / gain:.0f} s/pt"
        if self.gpus:
            text += f" · {self.train_seconds * self.gpus / 3600 / gain:.3g} GPU-h/pt"
        return text

    @property
    def cost_value(self) -> float | None:
        gain = self.gain_points
        return None if gain is None or self.train_seconds is None else self.train_seconds / gain


@dataclass
class RowGroup:
    """A sweep's or search's rows on the leaderboard: the best (by average) stands for them when collapsed."""

    group: RunGroup
    rows: list[Row]  # in the leaderboard's order, best first

    @property
    def best(self) -> Row:
        return self.rows[0]

    @property
    def label(self) -> str:
        return f"{self.group.kind} #{self.group.group_id} {self.group.name}"


def leaderboard_units(rows: list[Row]) -> list[Row | RowGroup]:
    """The rows in order, a group's gathered where its best row stands (the rows are sorted best first); a group of
    one point is a plain row."""
    members: dict[str, list[Row]] = {}
    for row in rows:
        if row.group is not None:
            members.setdefault(row.group.key, []).append(row)
    units: list[Row | RowGroup] = []
    for row in rows:
        if row.group is None or len(members[row.group.key]) < 2:
            units.append(row)
        elif members[row.group.key][0] is row:
            units.append(RowGroup(row.group, members[row.group.key]))
    return units


@dataclass
class Column:
    key: str
    title: str

    @property
    def benchmark(self) -> bool:
        """A leaderboard benchmark's column (else a custom or include_path task's, named as the user named it)."""
        return self.key in LEADERBOARD


@dataclass
class RewardModelRow:
    """A reward model (kind = "reward"): scored by its held-out pairwise accuracy, in a section of its own."""

    label: str
    run_id: int
    base_model: str
    accuracy: float
    stderr: float | None
    pairs: int | None
    train_seconds: float | None = None
    tags: list[str] = field(default_factory=list)
    href: str | None = None

    @property
    def accuracy_text(self) -> str:
        return f"{100 * self.accuracy:.1f}"

    @property
    def stderr_text(self) -> str:
        """The standard error of the accuracy, in points ("" where there is none)."""
        return f"{100 * self.stderr:.1f}" if self.stderr is not None and math.isfinite(self.stderr) else ""


@dataclass
class Leaderboard:
    title: str
    generated_at: str
    columns: list[Column]
    rows: list[Row]
    significance_level: float = SIGNIFICANCE_LEVEL  # a delta with a p-value below it is marked
    comparisons: int = 0  # tested deltas in the report: the Holm–Bonferroni correction's family
    searches: list[tuple[str, str]] = field(default_factory=list)  # (label, href) of each search page
    # Reward models, best held-out accuracy first: never rows of the table above, whose columns are benchmarks.
    reward_models: list[RewardModelRow] = field(default_factory=list)
    sweeps: list[tuple[str, str]] = field(default_factory=list)  # (label, href) of each sweep page

    def group_href(self, group: RunGroup) -> str | None:
        """The page of a sweep or search, when the report has one."""
        pages = self.sweeps if group.kind == "sweep" else self.searches
        return next((href for label, href in pages if label.startswith(f"#{group.group_id} ")), None)

    @property
    def units(self) -> list[Row | RowGroup]:
        """What the table shows, in order: rows, and groups of a sweep's or search's points."""
        return leaderboard_units(self.rows)


def _cells(rows: dict[str, Score], base: dict[str, Score] | None, columns: list[str]) -> dict[str, Cell]:
    cells = {}
    for task in columns:
        row = rows.get(task)
        if row is None:
            cells[task] = Cell(None)
            continue
        base_row = (base or {}).get(task)
        delta = row.value - base_row.value if base_row is not None else None
        tested = base_row is not None
        ci = (row.vs_base_ci_low, row.vs_base_ci_high) if tested and row.vs_base_ci_low is not None else None
        cells[task] = Cell(row.value, delta, row.stderr, row.comparable, settings=score_settings(row),
                           note=not_comparable_note(row), p_value=row.vs_base_p if tested else None, ci=ci)
    return cells


def adjust_for_many_comparisons(rows: list[Row]) -> int:
    """Holm–Bonferroni over every tested delta of the report: the best of fifty variants is marked only when its
    change survives the fifty comparisons. Sets each cell's p_adjusted; returns how many deltas were tested."""
    tested = [cell for row in rows for cell in row.cells.values() if cell.p_value is not None]
    for cell, adjusted in zip(tested, holm_adjusted([cell.p_value for cell in tested]), strict=True):
        cell.p_adjusted = adjusted
    return len(tested)


def mark_mixed_settings(rows: list[Row], keys: list[str]) -> None:
    """Within a column, flag the cells evaluated differently from the column's most common settings, naming the
    settings that differ."""
    for key in keys:
        cells = [row.cells[key] for row in rows if row.cells[key].value is not None]
        counts: dict[tuple[str, ...], int] = {}
        for cell in cells:
            counts[cell.settings_key] = counts.get(cell.settings_key, 0) + 1
        if len(counts) < 2:
            continue
        usual = max(counts, key=lambda k: counts[k])
        usual_settings = dict(zip(COLUMN_SETTINGS, usual, strict=True))
        for cell in cells:
            if cell.settings_key == usual:
                continue
            mine = dict(zip(COLUMN_SETTINGS, cell.settings_key, strict=True))
            changes = ", ".join(f"{label} {mine[label]} here, {usual_settings[label]} in most of the column"
                                for label in differing([mine, usual_settings]))
            cell.comparable = False
            mixed = f"evaluated at other settings than most of this column (fingerprint differs): {changes}"
            cell.note = f"{cell.note}; {mixed}" if cell.note else mixed


def _mean(cells: dict[str, Cell] | None) -> float | None:
    return leaderboard_average({k: c.value for k, c in (cells or {}).items() if c.value is not None})


def _average_cell(cells: dict[str, Cell], base_mean: float | None) -> Cell:
    mean = _mean(cells)
    delta = mean - base_mean if mean is not None and base_mean is not None else None
    caveats = average_caveats({k: c.comparable for k, c in cells.items() if c.value is not None})
    return Cell(mean, delta, None, not caveats,
                note=f"not the leaderboard's average: {'; '.join(caveats)}" if caveats else "")


def name_setting_differences(rows: list[Row]) -> None:
    """Rows of one model evaluated at different settings (a base model under two runs' eval settings) would
    look alike: each says, in its settings column, what its evaluation differs in."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.kind != "finetuned":
            groups.setdefault((row.kind, row.label), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        labels = differing([row.eval_settings for row in group])
        # The key names settings only when nothing else tells the evaluations apart.
        labels = [label for label in labels if label != EVAL_KEY] or labels
        for row in group:
            row.settings = f"evaluated with {describe(row.eval_settings, labels)}"


def _column_keys(all_scores: dict[int, list[Score]]) -> list[str]:
    return display_order(row.task for rows in all_scores.values() for row in rows
                         if row.task_group is None and row.task != REWARD_ACCURACY)


def _reward_model_row(summary: RunSummary, score: Score, href: str | None) -> RewardModelRow:
    return RewardModelRow(label=summary.name, run_id=summary.run_id, base_model=summary.base_model,
                          accuracy=score.value, stderr=score.stderr, pairs=score.n_samples,
                          train_seconds=summary.train_seconds, tags=summary.tags, href=href)


def key_settings(spec: dict) -> str:
    """The few hyperparameters people compare first, as one short string."""
    method, train = spec.get("method", {}), spec.get("train", {})
    parts = [f"lr {train['learning_rate']:g}"] if "learning_rate" in train else []
    if method.get("kind") in ("lora", "qlora"):
        parts.append(f"r {method.get('r')}")
    if train.get("max_steps"):
        parts.append(f"{train['max_steps']} steps")
    elif "epochs" in train:
        parts.append(f"{train['epochs']:g} ep")
    if "batch_size" in train:
        parts.append(f"bs {train['batch_size'] * train.get('grad_accum', 1)}")
    return " · ".join(parts)


def build_leaderboard(registry: Registry, *, title: str = "tunelab leaderboard",
                      run_href: Callable[[int], str] | None = None) -> Leaderboard:
    """Every evaluated model's row; fine-tuned cells carry their delta against the base and its p-value.

    Only reads: p-values are stored with the scores (registry/recording.py; revision 0012 filled in older ones).
    """
    runs: dict[int, RunSummary] = {r.run_id: r for r in list_runs(registry)}
    all_scores = run_scores(registry, headline_only=True)
    specs = resolved_specs(registry, list(all_scores))
    val_losses = validation_losses(registry, list(all_scores))
    gpus = training_gpus(registry, list(all_scores))
    groups = run_groups(registry, list(all_scores))
    evaluations = model_evaluations(registry)  # `tunelab eval` of any model: rows of their own
    keys = _column_keys({**all_scores, **{-i - 1: e.scores for i, e in enumerate(evaluations)}})
    rows: list[Row] = []
    reward_models: list[RewardModelRow] = []
    bases_seen: set[tuple[str, str]] = set()
    for run_id in sorted(all_scores):
        summary = runs.get(run_id)
        scores = all_scores[run_id]
        tuned = headline_rows(scores, "finetuned")
        if REWARD_ACCURACY in tuned:
            if summary is not None:
                reward_models.append(_reward_model_row(summary, tuned[REWARD_ACCURACY],
                                                       run_href(run_id) if run_href else None))
            continue
        base = headline_rows(scores, "base")
        base_cells = _cells(base, None, keys) if base else None
        if tuned and summary is not None:
            rows.append(Row(label=summary.name, kind="finetuned", run_id=run_id, method=summary.method,
                            base_model=summary.base_model, cells=_cells(tuned, base or None, keys), average=Cell(None),
                            final_loss=summary.final_loss, tags=summary.tags,
                            href=run_href(run_id) if run_href else None, train_seconds=summary.train_seconds,
                            num_examples=summary.num_train_examples, settings=key_settings(specs.get(run_id, {})),
                            val_loss=val_losses.get(run_id), reproduces=summary.reproduces_run_id,
                            base_average=_mean(base_cells), gpus=gpus.get(run_id, 0), group=groups.get(run_id)))
        if base and base_cells is not None:
            any_row = next(iter(base.values()))
            identity = (any_row.model_name, str(any_row.fingerprint.get("eval_key", "")))
            if identity in bases_seen:
                continue
            bases_seen.add(identity)
            rows.append(Row(label=any_row.model_name, kind="base", run_id=None, method="base model",
                            base_model=any_row.model_name, cells=base_cells, average=Cell(None),
                            eval_settings=model_settings(base.values())))
    for evaluation in evaluations:
        cells = _cells(headline_rows(evaluation.scores, "eval"), None, keys)
        href = run_href(evaluation.run_id) if run_href and evaluation.run_id in runs else None
        rows.append(Row(label=evaluation.model_name, kind="eval", run_id=evaluation.run_id, method="tunelab eval",
                        base_model=evaluation.model_name, cells=cells, average=Cell(None), href=href,
                        eval_settings=model_settings(headline_rows(evaluation.scores, "eval").values())))
    mark_mixed_settings(rows, keys)
    paged = {row.run_id for row in rows if row.run_id is not None}  # the runs that have a page
    for row in rows:
        # Averages once every cell is marked: a mark makes the average one that is not the leaderboard's.
        row.average = _average_cell(row.cells, row.base_average)
        if run_href and row.reproduces in paged:
            row.reproduces_href = run_href(row.reproduces)
    name_setting_differences(rows)
    comparisons = adjust_for_many_comparisons(rows)
    rows.sort(key=lambda r: (r.average.value is None, -(r.average.value or 0.0), r.label))
    columns = [Column(k, title_of(k)) for k in keys]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    reward_models.sort(key=lambda r: (-r.accuracy, r.label))
    return Leaderboard(title=title, generated_at=generated, columns=columns, rows=rows, comparisons=comparisons,
                       reward_models=reward_models)
