"""What became of a run's training data, as `tunelab show` prints it and the run page tabulates it.

The runner records the figures (runner/data/prepare.py DataStats, stored as the run's data_stats_json); this reads
them back: one line per file (the training files, then the validation file), and the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The totals worth a mention, and how they are named.
_TOTALS = (("train_examples", "training examples"), ("validation_examples", "validation examples"),
           ("train_tokens", "training tokens"), ("packed_sequences", "packed rows"))


@dataclass(frozen=True)
class DataSourceLine:
    """One data file's rows: read, empty, duplicates, over-length, kept, held out (None where not recorded)."""

    path: str
    rows: int | None
    empty: int | None
    duplicates: int | None
    overlength_dropped: int | None
    overlength_truncated: int | None
    kept: int | None
    held_out: int | None

    @property
    def overlength(self) -> str:
        return f"{_shown(self.overlength_dropped)} dropped, {_shown(self.overlength_truncated)} cut"

    @property
    def text(self) -> str:
        return (f"{self.path}: {_shown(self.rows)} rows read, {_shown(self.empty)} empty, "
                f"{_shown(self.duplicates)} duplicates, {_shown(self.overlength_dropped)} over-length dropped, "
                f"{_shown(self.overlength_truncated)} over-length truncated, {_shown(self.kept)} kept, "
                f"{_shown(self.held_out)} held out")


def data_source_lines(stats: dict[str, Any] | None) -> list[DataSourceLine]:
    """A line per training file, then one for the validation file (named so)."""
    if not stats:
        return []
    sources = list(stats.get("sources") or [])
    if stats.get("validation_file"):
        sources.append({**stats["validation_file"], "path": f"{stats['validation_file'].get('path')} (validation)"})
    return [DataSourceLine(path=str(source.get("path", "?")), rows=_count(source.get("rows")),
                           empty=_count(source.get("empty")), duplicates=_count(source.get("duplicates")),
                           overlength_dropped=_count(source.get("overlength_dropped")),
                           overlength_truncated=_count(source.get("overlength_truncated")),
                           kept=_count(source.get("kept")), held_out=_count(source.get("held_out")))
            for source in sources]


def data_totals(stats: dict[str, Any] | None) -> str:
    """"97 training examples, 19 validation examples, 5000 training tokens" (those recorded); "" for none."""
    stats = stats or {}
    return ", ".join(f"{stats[key]} {label}" for key, label in _TOTALS if stats.get(key) is not None)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _shown(count: int | None) -> str:
    return "?" if count is None else str(count)


def overlength_note(stats: dict[str, Any] | None, data: dict[str, Any]) -> str | None:
    """Why rows were dropped for their length although `[data] overlength = "truncate"` cuts rows rather than
    drop them: cut to max_seq_len, a row whose prompt fills it has no response token left to learn from (the
    loss covers the response only), so it is left out. None when no row was dropped so."""
    dropped = sum(line.overlength_dropped or 0 for line in data_source_lines(stats))
    if not dropped or data.get("overlength") != "truncate":
        return None
    rows = "row was" if dropped == 1 else "rows were"
    return (f'{dropped} over-length {rows} dropped although overlength = "truncate": cut to max_seq_len '
            f"({data.get('max_seq_len')} tokens), the prompt filled the row and left no response token to learn "
            "from.")
