"""Derive the demo data of the preference and RL methods from capitals_train.jsonl (seed 1234), reproducibly:

- capitals_preferences.jsonl: each question with the right capital as the chosen answer and another country's
  capital as the rejected one (reward models, DPO);
- capitals_prompts.jsonl: each question as a prompt, with the right `capital` as a field the reward function
  checks completions against (online RL: rloo, grpo);
- capitals_feedback.jsonl: each question with one answer and a verdict, right (true) or wrong (false) (KTO).

    python examples/make_rl_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SEED = 1234


def write(directory: Path, name: str, rows: list[dict]) -> None:
    (directory / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(out: Path = DATA) -> None:
    rows = [json.loads(line) for line in (DATA / "capitals_train.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    capitals = sorted({row["output"] for row in rows})
    rng = random.Random(SEED)

    def wrong(capital: str) -> str:
        return rng.choice([other for other in capitals if other != capital])

    write(out, "capitals_preferences.jsonl", [
        {"prompt": row["instruction"], "chosen": row["output"], "rejected": wrong(row["output"])} for row in rows])
    write(out, "capitals_prompts.jsonl", [{"prompt": row["instruction"], "capital": row["output"]} for row in rows])
    feedback = []
    for row in rows:
        right = rng.random() < 0.5
        feedback.append({"prompt": row["instruction"], "completion": row["output"] if right else wrong(row["output"]),
                         "label": right})
    write(out, "capitals_feedback.jsonl", feedback)


if __name__ == "__main__":
    main()
