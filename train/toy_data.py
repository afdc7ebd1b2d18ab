"""Toy labelled data for tests, benchmarks and smoke runs: running sums with one injected error.

    prm train-data toy -o runs/tiny-data/train.jsonl -n 64 --seed 0

Each example adds numbers step by step ("Add 7: 12 + 7 = 19"); with probability `error_rate` one step's
result is wrong and the example ends at that step (steps after the first error carry no label, as in TRL's
stepwise files). Labels are exact; soft labels are noisy MC-like values (high before the error, low at it).
"""

from __future__ import annotations

import random

from prm.records import TrainingExample

_ENDINGS = ["", "", " <", " |", " ки", "."]  # step endings that could merge with a marker if it were text


def toy_examples(n: int, seed: int = 0, error_rate: float = 0.5, max_steps: int = 6) -> list[TrainingExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        numbers = [rng.randint(2, 60) for _ in range(rng.randint(2, max_steps))]
        err = rng.randrange(1, len(numbers)) if rng.random() < error_rate else -1
        total = numbers[0]
        steps, labels, soft = [], [], []
        for k, x in enumerate(numbers[1:], start=1):
            right = total + x
            shown = right + rng.choice([-3, -2, -1, 1, 2, 5]) if k == err else right
            steps.append(f"Add {x}: {total} + {x} = {shown}{rng.choice(_ENDINGS)}")
            labels.append(k != err)
            soft.append(round(rng.uniform(0.6, 1.0), 3) if k != err else round(rng.uniform(0.0, 0.3), 3))
            total = shown
            if k == err:
                break
        prompt = f"Start from {numbers[0]} and add " + ", ".join(str(x) for x in numbers[1:]) + ". What is the total?"
        out.append(TrainingExample(prompt=prompt, completions=steps, labels=labels, soft_labels=soft,
                                   id=f"toy-{seed}-{i}"))
    return out
