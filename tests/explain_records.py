"""Synthetic activation records for the explanation and job tests: a "cat/dog" neuron and a head."""

from __future__ import annotations

import random

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord

VOCAB = [" the", " a", " sat", " on", " mat", " ran", " big", " small", " house", " tree", ".", ","]
ANIMALS = [" cat", " dog"]


def neuron_record(n_top: int = 20, n_random: int = 15, length: int = 12, seed: int = 0) -> NeuronRecord:
    """Fires ~8 on " cat" / " dog" (top records hold one or two), small noise elsewhere."""
    rng = random.Random(seed)

    def record(animals: int) -> ActivationRecord:
        tokens = [rng.choice(VOCAB) for _ in range(length)]
        for _ in range(animals):
            tokens[rng.randrange(length)] = rng.choice(ANIMALS)
        acts = [rng.uniform(7.0, 9.0) if t in ANIMALS else rng.uniform(-0.2, 0.3) for t in tokens]
        return ActivationRecord(tokens=tokens, activations=acts)

    top = sorted((record(rng.choice([1, 2])) for _ in range(n_top)), key=lambda r: -max(r.activations))
    return NeuronRecord(
        layer=0,
        index=1,
        most_positive_activation_records=top,
        random_sample=[record(rng.choice([0, 0, 1])) for _ in range(n_random)],
    )


def head_record(n_top: int = 20, n_random: int = 15, length: int = 8, seed: int = 0) -> NeuronRecord:
    """Attends strongly to " cat" from later tokens; square lower-triangle records."""
    rng = random.Random(seed)

    def record() -> ActivationRecord:
        tokens = [rng.choice(VOCAB) for _ in range(length)]
        tokens[rng.randrange(length // 2)] = " cat"
        flat = [(0.9 if tokens[j] == " cat" and i > j else 0.01) for i in range(length) for j in range(i + 1)]
        return ActivationRecord(tokens=tokens, activations=flat)

    return NeuronRecord(
        layer=0,
        index=1,
        most_positive_activation_records=[record() for _ in range(n_top)],
        random_sample=[record() for _ in range(n_random)],
    )


def silent_record() -> NeuronRecord:
    return NeuronRecord(
        layer=0,
        index=2,
        most_positive_activation_records=[ActivationRecord(tokens=[" a", " b"], activations=[0.0, -1.0])],
    )
