"""Dataset builder: a corpus streamed through a model into one TDB ``NeuronRecord`` per node.

The front door: ``build_dataset`` / ``DatasetBuilder`` (any model, corpus and kinds), ``Corpus``,
``CollationConfig``, ``KindSpec``; ``build_demo_dataset`` and ``build_live_layer`` for the embedded
default; ``main`` is ``neuron-explainer collate``.
"""

from neuron_explainer.collation.builder import CollationConfig, DatasetBuilder, build_dataset
from neuron_explainer.collation.cli import main
from neuron_explainer.collation.corpus import Corpus
from neuron_explainer.collation.demo import (
    DEMO_CONFIG,
    build_demo_dataset,
    build_live_layer,
    reference_corpus,
    reference_datasets,
)
from neuron_explainer.collation.groups import KindSpec

__all__ = [
    "DEMO_CONFIG",
    "CollationConfig",
    "Corpus",
    "DatasetBuilder",
    "KindSpec",
    "build_dataset",
    "build_demo_dataset",
    "build_live_layer",
    "main",
    "reference_corpus",
    "reference_datasets",
]
