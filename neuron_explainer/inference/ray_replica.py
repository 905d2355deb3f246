"""The replica side of ``--inference_backend ray``: a Ray Serve deployment whose replicas each own a model.

Each replica loads the model and its autoencoders (``load_warm_model``, exactly as a local server does)
and serves them through its own ``InferenceEngine``, so whatever Serve routes to one replica is coalesced
into padded batches as in a local server. Methods: ``run(request)`` (a ``ForwardRequest`` in, a
``ForwardResult`` out: plain dataclasses of CPU tensors, pickled as they are), ``call(fn)`` (``fn(model)``
on the engine's thread, its return value sent back), ``facts()`` (``models.facts.ModelFacts``, what the
server's view of the model is built from) and ``counters()``.

Every reply is a ``Reply``: the value, or the typed error as plain data (class name, message, fields), so
a ``BadInput`` or ``LimitExceeded`` raised on a replica is the same error on the server; plus the
replica's id and counters, so the server can report forward counts summed over replicas.

This module imports no Ray: ``ray_backend`` wraps ``ModelReplica`` in ``serve.deployment``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from neuron_explainer import errors
from neuron_explainer.errors import NeuronExplainerError

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaConfig:
    model_name: str
    mlp_autoencoder: str | None = None
    attn_autoencoder: str | None = None
    max_batch_size: int = 16
    max_wait_ms: float = 0.0
    torch_threads: int = 1
    simulated_forward_s: float | None = None
    """``bench/scale.py`` only: no model; every batch is a wait of this long holding no CPU."""


@dataclass(frozen=True)
class ErrorData:
    """A ``NeuronExplainerError`` as plain data: its class name in ``neuron_explainer.errors``."""

    kind: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: NeuronExplainerError) -> ErrorData:
        return cls(type(exc).__name__, exc.message, dict(exc.fields))

    def error(self) -> NeuronExplainerError:
        kind = getattr(errors, self.kind, None)
        if not (isinstance(kind, type) and issubclass(kind, NeuronExplainerError)):
            kind = NeuronExplainerError
        return kind(self.message, **self.fields)


@dataclass(frozen=True)
class Reply(Generic[T]):
    replica: str
    forwards: int
    """The replica's engine's ``forward_count`` after this request."""
    ooms: int
    value: T | None = None
    error: ErrorData | None = None
    backwards: int = 0
    """The replica's engine's ``backward_count`` after this request."""


def _sleeping_forward(seconds: float) -> Callable[[Any, Sequence[Any]], list[Any]]:
    from neuron_explainer.inference.requests import ForwardResult

    def forward(model: Any, requests: Sequence[Any]) -> list[Any]:
        time.sleep(seconds)  # holds the worker thread, not a CPU
        return [ForwardResult(r.tokens) for r in requests]

    return forward


def simulated_model() -> Any:
    """A ``tiny-gpt2``-shaped view (tokenizer, bounds, zero norms) for a replica that only waits."""
    import tempfile
    from pathlib import Path

    import torch

    from neuron_explainer.models.facts import ModelFacts, model_view
    from neuron_explainer.models.shapes import KNOWN_SHAPES
    from neuron_explainer.models.tokenizer import gpt2_tokenizer

    shape = KNOWN_SHAPES["tiny-gpt2"]
    with tempfile.TemporaryDirectory() as folder:
        gpt2_tokenizer().save_pretrained(folder)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    d_head = shape.d_model // shape.n_heads
    facts = ModelFacts(
        name="simulated",
        shape=shape,
        vocab_size=50257,
        device="none",
        checkpoint="simulated",
        tokenizer_files=files,
        neuron_write_norms=[torch.zeros(shape.d_mlp) for _ in range(shape.n_layers)],
        w_o_grams=[torch.zeros(shape.n_heads, d_head, d_head) for _ in range(shape.n_layers)],
        autoencoders=[],
        hook_names=frozenset(),
    )
    return model_view(facts)


class ModelReplica:
    """One replica: a loaded model and the engine that owns it (see the module docstring)."""

    def __init__(self, config: ReplicaConfig) -> None:
        from neuron_explainer.inference.engine import InferenceEngine
        from neuron_explainer.inference.startup import load_warm_model

        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.config = config
        forward = None
        if config.simulated_forward_s is not None:
            model = simulated_model()
            forward = _sleeping_forward(config.simulated_forward_s)
        else:
            model = load_warm_model(
                config.model_name,
                mlp_autoencoder=config.mlp_autoencoder,
                attn_autoencoder=config.attn_autoencoder,
                torch_threads=config.torch_threads,
            )
        self.model = model
        self.engine = InferenceEngine(
            model, config.max_batch_size, config.max_wait_ms, torch_threads=config.torch_threads, forward=forward
        )

    def _reply(self, value: Any = None, error: ErrorData | None = None) -> Reply[Any]:
        engine = self.engine
        return Reply(self.id, engine.forward_count, engine.oom_count, value, error, engine.backward_count)

    async def run(self, request: Any) -> Reply[Any]:
        try:
            return self._reply(await self.engine.run(request))
        except NeuronExplainerError as exc:
            return self._reply(error=ErrorData.of(exc))

    async def call(self, fn: Callable[[Any], Any]) -> Reply[Any]:
        try:
            return self._reply(await self.engine.call(fn))
        except NeuronExplainerError as exc:
            return self._reply(error=ErrorData.of(exc))

    def facts(self) -> Any:
        from neuron_explainer.models.facts import model_facts

        return model_facts(self.model)

    def counters(self) -> dict[str, Any]:
        """The replica's id, process id and counters (the server's baselines; tests find replicas by pid)."""
        engine = self.engine
        return {
            "replica": self.id,
            "pid": os.getpid(),
            "forwards": engine.forward_count,
            "backwards": engine.backward_count,
        }
