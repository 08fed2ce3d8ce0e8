"""What an online RL run's reward came from, as the run records it.

The runner resolves the reward source when the run starts (runner/reward_source.py) and stores a RewardRecord as
JSON on the run (run.reward_source_json); `tunelab show`, the run page and `tunelab reproduce` read it back.
Plain Python: the query path reads it without SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

RewardKind = Literal["run", "judge", "function"]


@dataclass(frozen=True)
class RewardRecord:
    """A reward source as an RL run used it.

    `digest` pins what produced the rewards: the sha256 of the reward run's final weights (with its base, for an
    adapter), of the judge's weights, or of the reward function's source file; None where it could not be read
    (a judge named by a hub id that is not on this machine as files).
    """

    kind: RewardKind
    name: str  # "run:3", the judge model as the spec names it, or "module:function"
    digest: str | None
    run_id: int | None = None  # kind "run": the reward run
    run_name: str | None = None  # kind "run": its experiment's name
    template: str | None = None  # kind "judge": the question put to the judge

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RewardRecord:
        return cls(**data)

    def describe(self) -> str:
        """One line: "reward run 3 (rm), weights 1a2b3c4d5e6f"."""
        pinned = f"{self.digest[:12]}" if self.digest else "not hashed"
        if self.kind == "run":
            return f"reward run {self.run_id} ({self.run_name}), weights {pinned}"
        if self.kind == "judge":
            return f"judge model {self.name}, weights {pinned}"
        return f"reward function {self.name}, source {pinned}"
