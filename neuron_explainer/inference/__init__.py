"""Live inference: requests, the batching engine that owns the model, and what live fields compute."""

from neuron_explainer.inference.engine import InferenceEngine
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult, LossConfig

__all__ = ["Ablation", "ForwardRequest", "ForwardResult", "InferenceEngine", "LossConfig"]
