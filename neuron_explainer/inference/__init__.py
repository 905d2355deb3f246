"""Live inference: requests, the batching engine that owns the model, and what live fields compute.

The names below load on first use, so importing a torch-free module of this package (``values``)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuron_explainer.inference.engine import InferenceEngine
    from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult, LossConfig

_HOMES = {
    "InferenceEngine": "neuron_explainer.inference.engine",
    "Ablation": "neuron_explainer.inference.requests",
    "ForwardRequest": "neuron_explainer.inference.requests",
    "ForwardResult": "neuron_explainer.inference.requests",
    "LossConfig": "neuron_explainer.inference.requests",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Ablation", "ForwardRequest", "ForwardResult", "InferenceEngine", "LossConfig"]
