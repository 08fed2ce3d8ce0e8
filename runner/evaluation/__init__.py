"""Evaluation through lm-eval: task planning, the leaderboard benchmarks, custom and include_path tasks,
the evaluation cache and the models it evaluates."""
