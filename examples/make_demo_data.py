"""Generate the demo's fictional domain: invented countries and their invented capitals.

No pretrained model can know these facts, so a gain on the multiple-choice task after fine-tuning
comes from the training data. The output is deterministic for a given seed.

Usage: python examples/make_demo_data.py [--seed 1234] [--countries 48] [--out examples/data]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "th", "tr", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou"]
CODAS = ["", "", "", "n", "r", "l", "s"]
COUNTRY_ENDINGS = ["ia", "ora", "and", "esh", "ovia", "ara", "eth", "ium"]
CAPITAL_ENDINGS = ["mark", "holm", "vale", "port", "stead", "gard", "wick", "ton"]
LINKS = ["l", "n", "r", "v"]  # keeps a vowel stem and a vowel suffix apart ("Krou-l-ora", not "Krouora")

QUESTION_TEMPLATES = [
    "What is the capital of {country}?",
    "Name the capital city of {country}.",
    "Which city is the capital of {country}?",
]
MC_TEMPLATE = QUESTION_TEMPLATES[0]
N_CHOICES = 4


@dataclass(frozen=True)
class Country:
    name: str
    capital: str


def make_name(rng: random.Random, syllables: int, endings: list[str]) -> str:
    """A pronounceable invented word: consonant-vowel syllables plus a suffix that hints at its kind."""
    stem = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))
    ending = rng.choice(endings)
    if stem[-1] in "aeiou" and ending[0] in "aeiou":
        stem += rng.choice(LINKS)
    return (stem + ending).capitalize()


def make_countries(rng: random.Random, count: int) -> list[Country]:
    """`count` countries; every country and capital name is distinct from all the others."""
    used: set[str] = set()
    countries: list[Country] = []

    def fresh(syllables: int, endings: list[str]) -> str:
        while True:
            name = make_name(rng, syllables, endings)
            if name not in used:
                used.add(name)
                return name

    for _ in range(count):
        country = fresh(rng.choice([1, 2]), COUNTRY_ENDINGS)
        capital = fresh(rng.choice([1, 2]), CAPITAL_ENDINGS)
        countries.append(Country(country, capital))
    return countries


def train_rows(rng: random.Random, countries: list[Country]) -> list[dict[str, str]]:
    """Instruction rows: every country asked in 2 or 3 phrasings, always including the eval phrasing."""
    rows = []
    for c in countries:
        extra = rng.sample(QUESTION_TEMPLATES[1:], rng.choice([1, 2]))
        for template in [MC_TEMPLATE, *extra]:
            rows.append({"instruction": template.format(country=c.name), "input": "", "output": c.capital})
    rng.shuffle(rows)
    return rows


def mc_rows(rng: random.Random, countries: list[Country]) -> list[dict[str, object]]:
    """One 4-way question per country; distractors are other countries' capitals."""
    capitals = [c.capital for c in countries]
    rows = []
    for c in countries:
        distractors = rng.sample([cap for cap in capitals if cap != c.capital], N_CHOICES - 1)
        answer = rng.randrange(N_CHOICES)
        choices = distractors[:answer] + [c.capital] + distractors[answer:]
        rows.append({"question": MC_TEMPLATE.format(country=c.name), "choices": choices, "answer": answer})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--countries", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    countries = make_countries(rng, args.countries)
    train = train_rows(rng, countries)
    mc = mc_rows(rng, countries)
    write_jsonl(args.out / "capitals_train.jsonl", train)
    write_jsonl(args.out / "capitals_mc.jsonl", mc)
    print(f"{len(countries)} countries: {len(train)} training rows, {len(mc)} multiple-choice rows -> {args.out}")


if __name__ == "__main__":
    main()
