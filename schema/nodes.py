"""Nodes: MLP neurons, attention heads and autoencoder latents. Thin types; ``resolvers/`` decides."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from neuron_explainer.inference.values import TokenScore
from neuron_explainer.nodes import NodeId
from neuron_explainer.nodes import NodeKind as CoreNodeKind
from neuron_explainer.resolvers import live as live_resolvers
from neuron_explainer.resolvers import logit_lens as lens_resolvers
from neuron_explainer.resolvers import nodes as node_resolvers
from neuron_explainer.resolvers import records as record_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.enums import AttentionPath, DataSource, NodeKind
from neuron_explainer.schema.policy.declare import fixed, live_prompt, plain, records
from neuron_explainer.schema.records import ActivationRecord, QuantileSample, Stats
from neuron_explainer.storage.reader import StoredExplanation


@strawberry.type(
    description="An explanation of what a node does, with its score when it was scored.", directives=[plain()]
)
class Explanation:
    text: str
    score: float | None
    dataset: str
    method: str | None

    @classmethod
    def of(cls, e: StoredExplanation) -> Explanation:
        return cls(text=e.text, score=e.score, dataset=e.dataset, method=e.method)


@strawberry.type(description="A vocabulary token and its logit-lens score.", directives=[plain()])
class TokenValue:
    token: str
    token_id: int
    value: float

    @classmethod
    def of(cls, t: TokenScore) -> TokenValue:
        return cls(token=t.token, token_id=t.token_id, value=t.value)


@strawberry.interface(
    description="A model component: MLP neuron, attention head or autoencoder latent.",
    directives=[plain(cacheable=True)],
)
class Node:
    id: strawberry.ID
    kind: NodeKind
    layer: int
    index: int
    node_id: strawberry.Private[NodeId]

    @strawberry.field(
        description="Max over the top-activating records (the original's definition).",
        directives=[records(None, 1, cacheable=True)],
    )
    async def max_activation(self, info: Info[Context, None], source: DataSource = DataSource.AUTO) -> float:
        return await record_resolvers.max_activation(info.context, self.node_id, source)

    @strawberry.field(
        description="The node's top-activating records, highest first.",
        directives=[records("first", 20, cacheable=True)],
    )
    async def top_activations(
        self, info: Info[Context, None], first: int | None = 20, source: DataSource = DataSource.AUTO
    ) -> list[ActivationRecord]:
        rows = await record_resolvers.top_activations(info.context, self.node_id, first, source)
        return [ActivationRecord.of(view, prov) for view, prov in rows]

    @strawberry.field(
        description="A uniform random sample of records from the dataset's corpus.",
        directives=[records("first", 50, cacheable=True)],
    )
    async def random_sample(
        self, info: Info[Context, None], first: int | None = None, source: DataSource = DataSource.AUTO
    ) -> list[ActivationRecord]:
        rows = await record_resolvers.random_sample(info.context, self.node_id, first, source)
        return [ActivationRecord.of(view, prov) for view, prov in rows]

    @strawberry.field(
        description="Records sampled per activation quantile, with the bucket bounds.",
        directives=[records("first", 50, cacheable=True)],
    )
    async def quantile_samples(
        self, info: Info[Context, None], first: int | None = None, source: DataSource = DataSource.AUTO
    ) -> list[QuantileSample]:
        buckets = await record_resolvers.quantile_samples(info.context, self.node_id, first, source)
        return [
            QuantileSample(lower_bound=lo, upper_bound=hi, records=[ActivationRecord.of(v, prov) for v in views])
            for lo, hi, views, prov in buckets
        ]

    @strawberry.field(
        description="Mean, variance, skewness, kurtosis and quantile boundaries.",
        directives=[records(None, 1, cacheable=True)],
    )
    async def stats(self, info: Info[Context, None], source: DataSource = DataSource.AUTO) -> Stats:
        resolved = await record_resolvers.resolve_record(info.context, self.node_id, source)
        levels = await record_resolvers.quantile_levels(info.context, resolved)
        return Stats.of(resolved.record, resolved.provenance, levels)

    @strawberry.field(
        description="The node's values on a prompt, computed live: per token, or for a head attention write norm "
        "per (query, key) pair in attentionRows. normalizedActivations: clamp(x, 0) / the stored record's "
        "maxActivation when a dataset has the node, else the prompt's own max. Null with an error when no model "
        "runs (MODEL_NOT_LOADED) or the prompt is bad (BAD_USER_INPUT).",
        directives=[live_prompt("prompt")],
    )
    async def activations(self, info: Info[Context, None], prompt: str) -> ActivationRecord | None:
        view, provenance = await live_resolvers.node_activations_on_text(info.context, self.node_id, prompt)
        return ActivationRecord.of(view, provenance)

    @strawberry.field(
        description="Logit lens (weights only, no prompt): the output tokens this node's write upvotes most (lowest: "
        "downvotes), as TDB defines it: the write at activation 1 (W_out row; a latent's decoder column) through the "
        "unembedding with the final LayerNorm gain, minus its mean over the vocabulary. Not for attention heads.",
        directives=[fixed(50)],
    )
    async def output_tokens(
        self, info: Info[Context, None], k: int = 10, lowest: bool = False
    ) -> list[TokenValue] | None:
        tokens = await lens_resolvers.lens_tokens(info.context, self.node_id, k, lowest, inputs=False)
        return [TokenValue.of(t) for t in tokens]

    @strawberry.field(
        description="Logit lens (weights only): the input tokens whose embedding most upvotes this node (lowest: "
        "downvotes): an MLP neuron's (or MLP latent's) pre-activation with the embedding as the residual stream, as "
        "TDB; for a head, the embedding read against the gradient of its attention logit through path Q (default) or "
        "K on TDB's one-token dummy prompt 'a'.",
        directives=[fixed(50)],
    )
    async def input_tokens(
        self, info: Info[Context, None], k: int = 10, lowest: bool = False, path: AttentionPath | None = None
    ) -> list[TokenValue] | None:
        tokens = await lens_resolvers.lens_tokens(info.context, self.node_id, k, lowest, inputs=True, path=path)
        return [TokenValue.of(t) for t in tokens]

    @strawberry.field(
        description="Stored and newly scored explanations, from every explanation dataset.",
        directives=[records(None, 1)],
    )
    async def explanations(self, info: Info[Context, None]) -> list[Explanation]:
        return [Explanation.of(e) for e in await node_resolvers.explanations(info.context, self.node_id)]


@strawberry.type(description="One unit of an MLP layer's post-activation (blocks.{L}.mlp.hook_post).")
class MlpNeuron(Node):
    pass


@strawberry.type(description="One attention head; its records hold one value per (query, key) token pair.")
class AttentionHead(Node):
    pass


@strawberry.type(description="A latent of a sparse autoencoder reading an MLP or attention location.")
class AutoencoderLatent(Node):
    autoencoder: str


def node_of(node: NodeId) -> Node:
    common = dict(id=strawberry.ID(str(node)), kind=node.kind, layer=node.layer, index=node.index, node_id=node)
    if node.kind is CoreNodeKind.MLP_NEURON:
        return MlpNeuron(**common)  # type: ignore[arg-type]
    if node.kind is CoreNodeKind.ATTENTION_HEAD:
        return AttentionHead(**common)  # type: ignore[arg-type]
    return AutoencoderLatent(autoencoder=node.autoencoder or "", **common)  # type: ignore[arg-type]
