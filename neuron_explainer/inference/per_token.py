"""What each token (and each token pair) contributes to the target, from one pass.

- ``token_attribution``: TDB's ``token_attribution``: act × grad of each token's embedding (token plus
  position), summed over ``d_model``: ``emb[t] · ∂target/∂emb[t]``.
- ``component_sums``: TDB's ``componentSumsForTokenDisplay`` — one node-table column summed per token
  over every layer and unit of each component: the embedding, the MLP neurons, and the heads' pairs
  grouped by query token ("attention from") and by key token ("attention to"). As in TDB these always
  use neurons and heads, never latents.
- ``token_pair_attribution``: the column summed over every layer and head per (query, key) pair: the
  token pairs through which attention matters most for the target.

Pure functions of a ``ForwardResult`` holding a node table's hooks for embeddings, neurons and heads.
"""

from __future__ import annotations

import torch

from neuron_explainer.inference.node_table import columns
from neuron_explainer.inference.requests import ForwardResult
from neuron_explainer.inference.values import Column, TableKind, TokenPair, TokenSums
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel

PER_TOKEN_KINDS = (TableKind.EMBEDDING, TableKind.MLP_NEURON, TableKind.ATTENTION_HEAD)


def token_attribution(result: ForwardResult) -> list[float]:
    hook = hook_names.embeddings()
    emb, grad = result.activations[hook].float(), result.grads[hook].float()  # [pos, d_model]
    return (emb * grad).sum(-1).tolist()


def _pair_sums(model: LoadedModel, result: ForwardResult, column: Column) -> torch.Tensor:  # [query, key]
    return columns(model, result, TableKind.ATTENTION_HEAD)[column].sum(dim=(0, 1))


def component_sums(model: LoadedModel, result: ForwardResult, column: Column) -> list[TokenSums]:
    embedding = columns(model, result, TableKind.EMBEDDING)[column]  # [pos]
    mlp = columns(model, result, TableKind.MLP_NEURON)[column].sum(dim=(0, 2))  # [pos]
    pairs = _pair_sums(model, result, column)  # zero above the diagonal
    attention_from, attention_to = pairs.sum(dim=1), pairs.sum(dim=0)
    return [
        TokenSums(t, float(embedding[t]), float(mlp[t]), float(attention_from[t]), float(attention_to[t]))
        for t in range(len(result.tokens))
    ]


def token_pair_attribution(
    model: LoadedModel, result: ForwardResult, column: Column, k: int, lowest: bool = False
) -> list[TokenPair]:
    """The ``k`` (query, key) pairs with the largest (or, ``lowest``, smallest) column sum over all heads."""
    pairs = _pair_sums(model, result, column)
    n = pairs.shape[0]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    flat = pairs.masked_fill(~causal, float("inf") if lowest else float("-inf")).flatten()
    top = torch.topk(flat, k=min(k, n * (n + 1) // 2), largest=not lowest)
    return [TokenPair(int(i) // n, int(i) % n, float(v)) for v, i in zip(top.values, top.indices, strict=True)]
