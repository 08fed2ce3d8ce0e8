"""The lineage a run records: the runs its starting weights came from, nearest first, and the original base.

The runner works it out (runner/lineage.py) and stores it as JSON on the run; `tunelab show`, the run page and
the model card read it back through this record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Ancestor:
    run_id: int
    name: str
    method: str


@dataclass
class Lineage:
    origin: str  # the base model the chain started from: a directory (absolute) or a hub id
    runs: list[Ancestor] = field(default_factory=list)  # nearest first

    def to_json(self) -> dict:
        return {"runs": [asdict(a) for a in self.runs], "origin": self.origin}

    @classmethod
    def from_json(cls, data: dict) -> Lineage:
        return cls(origin=data["origin"], runs=[Ancestor(**a) for a in data.get("runs", [])])

    def describe(self, run_id: int | None = None) -> str:
        """One line, newest first: "run 3 <- run 2 (lora) <- run 1 (full) <- /models/tiny"."""
        parts = [f"run {run_id}"] if run_id is not None else []
        parts += [f"run {a.run_id} ({a.method})" for a in self.runs]
        return " <- ".join(parts + [self.origin])
