"""Hand-built records whose scores are known in advance, for the classifier scorers' tests."""

from __future__ import annotations

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord

VOCAB = [" house", " tree", " sat", " mat", " ran", " big", " small", " road"]


def _record(words: list[str], active: str | None) -> ActivationRecord:
    return ActivationRecord(tokens=words, activations=[8.0 if w == active else 0.05 for w in words])


def cat_neuron(n_top: int = 40, n_random: int = 12) -> NeuronRecord:
    """Fires 8 on " cat", ~0 elsewhere. Top records hold " cat" and never " money"; random records hold
    " money" and never " cat". Exactly half of the scored examples of each kind hold " sat" (the valid
    top records 2, 6, 10, ..., and the first 10 random ones)."""
    top, rand = [], []
    for i in range(n_top):
        words = [w for w in (VOCAB[(i + k) % len(VOCAB)] for k in range(6)) if w != " sat"]
        words.insert(2, " cat")
        if (i // 4) % 2 == 0:
            words.append(" sat")
        top.append(_record(words, " cat"))
    for i in range(n_random):
        words = [w for w in (VOCAB[(i * 3 + k) % len(VOCAB)] for k in range(6)) if w != " sat"]
        words.insert(1, " money")
        if i % 2 == 0:
            words.append(" sat")
        rand.append(_record(words, None))
    return NeuronRecord(layer=0, index=7, most_positive_activation_records=top, random_sample=rand)


def topic_neuron() -> NeuronRecord:
    """Activating records are about cats, non-activating ones about money (for the embedding scorer)."""
    cats = [
        " the kitten purred on the sofa",
        " my cat chased a mouse",
        " cats sleep all day in the sun",
        " the tabby cat licked its paw",
        " a kitten played with yarn",
        " the cat meowed for food",
    ]
    money = [
        " the stock market fell sharply",
        " interest rates rose again this quarter",
        " the bank raised its mortgage fees",
        " investors sold their shares",
        " inflation hit a ten year high",
        " the company reported record profits",
    ]

    def rec(text: str, value: float) -> ActivationRecord:
        words = text.split(" ")[1:]
        tokens = [" " + w for w in words]
        return ActivationRecord(tokens=tokens, activations=[value] * len(tokens))

    top = [rec(t, 5.0) for t in cats for _ in range(2)] * 2  # top[2::4] picks cat records
    return NeuronRecord(
        layer=0, index=3, most_positive_activation_records=top, random_sample=[rec(t, 0.0) for t in money]
    )


def same_texts_neuron() -> NeuronRecord:
    """Activating and non-activating records hold the very same texts: no explanation can tell them apart."""
    texts = [[" the", " stock", " fell"], [" a", " kitten", " slept"], [" rain", " fell", " today"], [" big", " news"]]
    top = [ActivationRecord(t, [4.0] * len(t)) for t in texts for _ in range(4)]
    rand = [ActivationRecord(t, [0.0] * len(t)) for t in texts for _ in range(2)]
    return NeuronRecord(layer=0, index=4, most_positive_activation_records=top, random_sample=rand)
