"""Execution: a stored run resolved into model, data and method, trained, checkpointed and evaluated.

Rooms, each importing only those below it (pyproject's import contracts check it):
  worker.py, reproduce.py, execute.py, export.py, doctor.py, evaluate.py, lineage.py - the orchestration;
  evaluation/ - lm-eval: task planning, the leaderboard benchmarks, custom and include_path tasks, the cache;
  training/ - one recipe per method family over model loading, the Trainer, checkpoints, torchrun;
  data/ - a spec's data files read, cleaned, rendered, tokenised, mixed, packed and fingerprinted;
  devices.py, environment.py, errors.py - what every room may use.
"""
