"""Stored activation data about nodes: records, their TDB JSON codec, token-pair layout, normalization."""

from neuron_explainer.activations.attention import flatten_rows, unflatten_rows
from neuron_explainer.activations.codec import decode_neuron_record, encode_neuron_record
from neuron_explainer.activations.normalize import normalize
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord

__all__ = [
    "ActivationRecord",
    "NeuronRecord",
    "decode_neuron_record",
    "encode_neuron_record",
    "flatten_rows",
    "normalize",
    "unflatten_rows",
]
