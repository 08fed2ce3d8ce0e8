"""Foreground progress for a run: a rich progress bar for training, one line per evaluation step; and the
figures training reports (TrainingProgress), which the registry keeps for `tunelab show`."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tunelab.experiments.plain_text import printable


class RunProgress:
    def __init__(self, run_id: int, name: str, *, enabled: bool = True) -> None:
        self.console = Console(file=sys.stderr)
        self.enabled = enabled
        # The name and the notes quote user text (names, paths, task names): printable, and never taken for markup.
        self._label = escape(printable(f"run {run_id} {name}"))
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self.console.print(f"[bold]{self._label}[/bold]: training")
            self._progress = Progress(
                TextColumn("  train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=self.console, transient=False,
                # Drawn by rich's own thread, which holds the interpreter while it draws (about 0.4 ms a time):
                # four times a second keeps that off the training loop. `training` only sets the figures.
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=None, loss="-", speed="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def training(self, progress) -> None:
        """A TrainingProgress: step, loss, tokens/s (the ETA is the bar's own)."""
        if self._progress is not None and self._task is not None:
            rate = progress.tokens_per_second
            self._progress.update(self._task, completed=progress.step, total=progress.total or None,
                                  loss=f"{progress.loss:.4f}" if progress.loss is not None else "-",
                                  speed=f"{rate:,.0f} tok/s" if rate is not None else "")

    def resumed(self, step: int, dropped: int) -> None:
        """Training continues from a checkpoint; printed above the bar, which stays."""
        if not self.enabled:
            return
        extra = f", {dropped} logged step(s) after it will be redone" if dropped else ""
        self.console.print(f"  resuming from the checkpoint at step {step}{extra}")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step)

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.enabled:
            self.console.print(f"  {escape(printable(message))}")


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands, as the progress bar and `tunelab show` give it."""

    step: int
    total: int
    loss: float | None
    tokens_per_second: float | None  # non-padding tokens, all processes together, since this attempt began
    eta_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
