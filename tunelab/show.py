"""Human-readable `tunelab show`: a run's record as rich panels and tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tunelab.experiments.benchmarks import REWARD_ACCURACY, display_order
from tunelab.experiments.toml_text import spec_toml
from tunelab.output import fmt_float, fmt_time
from tunelab.registry.lineage import Lineage
from tunelab.registry.reward_sources import RewardRecord
from tunelab.registry.run_records import RunDetail
from tunelab.registry.scores import Score, headline_rows
from tunelab.reports.data_stats import data_source_lines, data_totals, overlength_note
from tunelab.reports.eval_settings import average_caveats, not_comparable_reasons
from tunelab.reports.marks import delta_text
from tunelab.reports.scores import headline_scores
from tunelab.terminal import markup


def print_detail(detail: RunDetail) -> None:
    console = Console()
    s = detail.summary
    console.print(f"[bold]run {s.run_id}[/bold]  experiment {s.experiment_id}  [bold]{markup(s.name)}[/bold]  "
                  f"status: {markup(s.status)}")
    console.print(markup(f"  method {s.method}  base {s.base_model}  spec {detail.spec_path}  "
                         f"hash {detail.spec_hash[:12]}"))
    console.print(f"  created {fmt_time(s.created_at)}  started {fmt_time(s.started_at)}  "
                  f"finished {fmt_time(s.finished_at)}  output {markup(detail.output_dir or '-')}")
    if s.placement:
        ran = "running in" if s.status == "running" else "last ran in"
        console.print(markup(f"  {ran} Slurm job {s.placement}"))
    if s.error:
        console.print(f"  [red]error:[/red] {markup(s.error)}")
    if s.reproduces_run_id is not None:
        console.print(f"  reproduces run {s.reproduces_run_id} (made by tunelab reproduce)")
    if detail.train_seconds is not None:
        console.print(f"  trained {detail.num_train_examples} examples in {detail.train_seconds:.1f}s, "
                      f"final loss {fmt_float(s.final_loss)}")
    if detail.validation_loss is not None:
        console.print(f"  validation loss {fmt_float(detail.validation_loss)} (the last validation point)")
    if detail.best_step is not None:
        console.print(f"  final weights: the best checkpoint by validation loss, step {detail.best_step}")
    if detail.progress:
        console.print("  progress: " + progress_line(detail.progress, running=s.status == "running"))
    if detail.data_stats:
        print_data_stats(console, detail.data_stats, detail.spec.get("data", {}))
    if detail.checkpoints:
        console.print("  checkpoints: " + ", ".join(f"step {c['step']}" for c in detail.checkpoints))
    if detail.samples:
        console.print(f"  samples: {len(detail.samples)} prompts answered by the base and the fine-tuned model "
                      "(the text: show --json, the run page)")
    if detail.scores:
        print_scores(console, detail.scores)
    accuracy = headline_rows(detail.scores, "finetuned").get(REWARD_ACCURACY)
    if accuracy is not None:
        console.print(f"  reward model: held-out pairwise accuracy {accuracy.value:.4f} (stderr "
                      f"{fmt_float(accuracy.stderr)}, {accuracy.n_samples} pairs)")
    console.print("  spec (resolved: what the run used):")
    # Line by line: a newline inside one value is escaped, the lines of the TOML are kept.
    console.print("\n".join(markup(line) for line in indented(spec_toml(detail.spec)).split("\n")), soft_wrap=True,
                  highlight=False)
    if detail.lineage and detail.lineage["runs"]:
        console.print("  lineage: " + markup(Lineage.from_json(detail.lineage).describe(s.run_id)), soft_wrap=True)
    if detail.reward_source:
        print_reward(console, detail)


def print_reward(console: Console, detail: RunDetail) -> None:
    """Online RL: what scored the completions, and how the mean reward and the KL moved over training."""
    reward = RewardRecord.from_json(detail.reward_source or {})
    console.print("  reward: " + markup(reward.describe()), soft_wrap=True)
    if reward.template:
        console.print("    the judge is asked:")
        console.print("\n".join(markup(line) for line in indented(reward.template, "      ").split("\n")),
                      soft_wrap=True, highlight=False)
    points = [m for m in detail.metrics if m.get("reward") is not None]
    if points:
        first, last = points[0], points[-1]
        kl = f", KL to the reference {last['kl']:.4f}" if last.get("kl") is not None else ""
        console.print(f"  reward per step: {first['reward']:.4f} at step {first['step']} -> {last['reward']:.4f} at "
                      f"step {last['step']} (mean of the step's completions){kl}", soft_wrap=True)


def indented(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").splitlines())


def print_scores(console: Console, scores: list[Score]) -> None:
    """The evaluation table, marks on scores that are not leaderboard-comparable (as the report marks them, with
    why), and the leaderboard average with what keeps it from being the leaderboard's."""
    table = Table(title="evaluation", title_justify="left")
    for column in ("task", "metric", "fine-tuned", "base", "delta", "p", "shots"):
        table.add_column(column)
    tuned, base = headline_rows(scores, "finetuned"), headline_rows(scores, "base")
    marked: list[str] = []
    for task in display_order([*tuned, *base]):
        t, b = tuned.get(task), base.get(task)
        row = t or b
        for kind, score in (("fine-tuned", t), ("base", b)):
            if score is not None and not score.comparable:
                marked.append(f"{task} ({kind}): {'; '.join(not_comparable_reasons(score))}")
        table.add_row(markup(task), markup(row.metric), _value(t), _value(b),
                      delta_text(t.value - b.value) if t and b else "-",
                      "-" if t is None or b is None or t.vs_base_p is None else f"{t.vs_base_p:.3g}",
                      str(row.num_fewshot))
    console.print(table)
    if marked:
        console.print("  * not leaderboard-comparable:")
        for line in marked:
            console.print(markup(f"    {line}"), soft_wrap=True)
    average = headline_scores(scores, "finetuned").get("average")
    if average is not None:
        caveats = average_caveats({task: score.comparable for task, score in tuned.items()})
        note = f" (not the leaderboard's average: {'; '.join(caveats)})" if caveats else ""
        console.print(f"  average (leaderboard benchmarks): {average:.4f}{note}", soft_wrap=True)


def _value(score: Score | None) -> str:
    if score is None:
        return "-"
    return fmt_float(score.value) + ("" if score.comparable else "*")


def progress_line(progress: dict[str, Any], *, running: bool) -> str:
    """"step 40/100, loss 1.2345, 1,234 tokens/s, ETA 0:01:10" (the ETA only while the run is running)."""
    parts = [f"step {progress.get('step')}/{progress.get('total')}"]
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.4f}")
    if progress.get("tokens_per_second") is not None:
        parts.append(f"{progress['tokens_per_second']:,.0f} tokens/s")
    eta = progress.get("eta_seconds")
    if running and eta is not None and progress.get("step") != progress.get("total"):
        minutes, seconds = divmod(int(round(eta)), 60)
        parts.append(f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}")
    return ", ".join(parts)


def print_data_stats(console: Console, stats: dict[str, Any], data: dict[str, Any]) -> None:
    """What became of the training data's rows, one line per file: read, empty, duplicates, over-length, held out;
    and why over-length rows were dropped when the spec asked to cut them."""
    console.print("  training data:")
    for line in data_source_lines(stats):
        console.print(markup(f"    {line.text}"), soft_wrap=True)
    if totals := data_totals(stats):
        console.print(markup(f"    {totals}"), soft_wrap=True)
    if note := overlength_note(stats, data):
        console.print(markup(f"    {note}"), soft_wrap=True)
