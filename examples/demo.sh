#!/usr/bin/env bash
# The main job end to end on the embedded SQLite registry and the bundled tiny model:
# declare (two specs) -> queue -> train -> evaluate (fine-tuned and base) -> report.
set -euo pipefail
cd "$(dirname "$0")/.."

export TUNELAB_HOME="${TUNELAB_HOME:-.tunelab-demo}"
rm -rf "$TUNELAB_HOME"

echo "== declare and queue"
tunelab submit examples/specs/tiny-lora.toml examples/specs/tiny-full.toml

echo "== train and evaluate (worker drains the queue)"
tunelab worker --until-empty

echo "== results"
tunelab ls
tunelab report -o leaderboard.html

# The demo's promise: fine-tuning measurably beats the base model on the domain task.
tunelab ls --json | python3 examples/check_demo.py
