"""The Open LLM Leaderboard v1 benchmarks and their average: defined here once, for every layer.

The spec's defaults and checks, the runner's lm-eval tasks, `ls --where/--sort average` (SQL built from
LEADERBOARD_AVERAGE in registry/where.py) and the reports' columns all read this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    """One leaderboard benchmark: what it is called, how it is evaluated, how its score is shown."""

    name: str  # the [eval] tasks entry and the task its score is recorded under
    title: str  # its column heading in listings and reports
    num_fewshot: int  # the leaderboard's few-shot count; [eval.num_fewshot] may depart from it
    metric: str  # the headline metric its score is reported under
    lm_metric: str  # that metric's key in lm-eval's results
    official_yaml: str  # the official lm-eval task file it includes, relative to lm_eval/tasks ({subject} for MMLU)


# In display order.
LEADERBOARD: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("arc_challenge", "ARC", 25, "acc_norm", "acc_norm", "arc/arc_challenge.yaml"),
        Benchmark("hellaswag", "HellaSwag", 10, "acc_norm", "acc_norm", "hellaswag/hellaswag.yaml"),
        # The leaderboard's MMLU is the unweighted mean of its 57 subjects, recorded under task_group "mmlu".
        Benchmark("mmlu", "MMLU", 5, "acc", "acc", "mmlu/default/mmlu_{subject}.yaml"),
        # lm-eval's truthfulqa_mc2 reports the MC2 score (probability mass on the true answers) as `acc`.
        Benchmark("truthfulqa_mc2", "TruthfulQA", 0, "mc2", "acc", "truthfulqa/truthfulqa_mc2.yaml"),
    )
}
# MMLU's shots are the first ones of each subject's dev split, which holds five.
MMLU_MAX_SHOTS = 5
# The seed the leaderboard (and the lm_eval command's default) draws few-shot examples with; a result at another
# few-shot seed saw other prompts, so it is not leaderboard-comparable.
LEADERBOARD_FEWSHOT_SEED = 1234
# The 57 MMLU subjects, as lm-eval names its mmlu_<subject> tasks (tests check this list against the installed
# lm-eval's task files): `[eval] tasks` may name single ones, and the spec is checked without importing lm-eval.
MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)


@dataclass(frozen=True)
class Average:
    """A plain mean over the tasks in `tasks` that a model has a score for; other tasks never count.

    No score of any of them: no average. registry/where.py turns this same definition into SQL.
    """

    tasks: tuple[str, ...]

    def of(self, values: Mapping[str, float]) -> float | None:
        present = [values[task] for task in self.tasks if task in values]
        return sum(present) / len(present) if present else None


LEADERBOARD_AVERAGE = Average(tuple(LEADERBOARD))

# A reward model's score (`[method] kind = "reward"`): its pairwise accuracy on held-out preference pairs. Recorded
# as a score of the run like any other, never a leaderboard benchmark: no average counts it, and reports show it in
# a reward-model section of its own.
REWARD_ACCURACY = "reward_accuracy"
REWARD_ACCURACY_METRIC = "pairwise_acc"


def leaderboard_average(values: Mapping[str, float]) -> float | None:
    """The leaderboard average of a model's headline values by task."""
    return LEADERBOARD_AVERAGE.of(values)


def with_average(values: dict[str, float]) -> dict[str, float]:
    """Headline values by task, with "average" added when a leaderboard benchmark is present."""
    mean = leaderboard_average(values)
    return values if mean is None else {**values, "average": mean}


def display_order(tasks: Iterable[str]) -> list[str]:
    """The leaderboard benchmarks among `tasks` in leaderboard order, then any other task by name."""
    present = set(tasks)
    return [name for name in LEADERBOARD if name in present] + sorted(present - set(LEADERBOARD))


def title_of(task: str) -> str:
    """A task's column heading: a benchmark's title, any other task's own name."""
    benchmark = LEADERBOARD.get(task)
    return benchmark.title if benchmark else task
