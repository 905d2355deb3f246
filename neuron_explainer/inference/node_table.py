"""TDB's node table: for one pass, the nodes that matter most by any of four columns, every column filled.

Built as TDB's ``topKComponents`` (``tdb_conversions.py``, ``multi_group.py`` in its source): each
column is a group of comparable values over every node kind asked; the group's k largest and k
smallest entries are taken over all those kinds together (``per_kind``: k of each kind instead), the
groups' picks are unioned in TDB's order (write norm, act × grad, direct effect, activation; top then
bottom; first occurrence kept), and every column is reported for every picked entry.

The columns (TDB's DSTs; "g" is the target's gradient at the residual stream it reads, see
``inference/direct_effects.py``):

=============  ====================  ====================  ====================  =======================
kind           activation            write norm            act × grad            direct effect
=============  ====================  ====================  ====================  =======================
embedding      1 (``always_one``)    ‖emb[t]‖              emb[t] · ∂/∂emb[t]    emb[t] · g[t]
MLP neuron     post-activation       act · ‖W_out[n]‖      act · ∂/∂act          act · W_out[n] · g[t]
head (q, k)    attention prob. A     A · ‖v[k] · W_O‖      A · ∂/∂A              A · (v[k] · W_O) · g[q]
latent         latent activation     act · ‖decoder[z]‖    act · ∂/∂act          act · decoder[z] · g[t]
=============  ====================  ====================  ====================  =======================

"emb" is TDB's ``resid_post_embedding``: token plus position embedding. An MLP-autoencoder latent's
decoder column is pushed through ``W_out`` when it reads ``mlp_post_act``. Pure functions of a
``ForwardResult`` (CPU tensors) and the model's precomputed norms; no weights are read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from neuron_explainer.inference.requests import ForwardResult
from neuron_explainer.inference.values import Column, NodeValues, TableEntry, TableKind
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.write_norms import value_write_norms
from neuron_explainer.nodes import NodeId, NodeKind

DEFAULT_KINDS = (TableKind.EMBEDDING, TableKind.MLP_NEURON, TableKind.ATTENTION_HEAD)
_LATENT_KINDS = {
    TableKind.MLP_AUTOENCODER_LATENT: NodeKind.MLP_AUTOENCODER_LATENT,
    TableKind.ATTENTION_AUTOENCODER_LATENT: NodeKind.ATTENTION_AUTOENCODER_LATENT,
}


@dataclass(frozen=True, slots=True)
class TableRow:
    entry: TableEntry
    values: NodeValues


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    entry: TableEntry
    left: NodeValues
    right: NodeValues

    @property
    def difference(self) -> NodeValues:
        """right − left, column by column."""
        return NodeValues(*(r - lt for r, lt in zip(_tuple(self.right), _tuple(self.left), strict=True)))


def _tuple(v: NodeValues) -> tuple[float, float, float, float]:
    return (v.activation, v.write_norm, v.act_times_grad, v.direct_effect)


def value_hook_of(model: LoadedModel, kind: TableKind, layer: int) -> str:
    if kind is TableKind.EMBEDDING:
        return hook_names.embeddings()
    if kind is TableKind.MLP_NEURON:
        return hook_names.mlp_post(layer)
    if kind is TableKind.ATTENTION_HEAD:
        return hook_names.attn_pattern(layer)
    return hook_names.ae_latents(_LATENT_KINDS[kind], layer)


def table_hooks(model: LoadedModel, kinds: Iterable[TableKind]) -> tuple[frozenset[str], frozenset[str]]:
    """(captures and gradients, direct-effect hooks) a table of ``kinds`` reads from one pass."""
    values: set[str] = set()
    extra: set[str] = set()
    for kind in kinds:
        layers = [0] if kind is TableKind.EMBEDDING else range(model.shape.n_layers)
        values |= {value_hook_of(model, kind, layer) for layer in layers}
        if kind is TableKind.ATTENTION_HEAD:
            extra |= {hook_names.attn_v(layer) for layer in layers}
    return frozenset(values | extra), frozenset(values)


# ---- columns ----------------------------------------------------------------------------------
def _embedding_columns(result: ForwardResult) -> dict[Column, torch.Tensor]:  # each [pos]
    hook = hook_names.embeddings()
    emb = result.activations[hook].float()  # [pos, d_model]
    return {
        Column.ACTIVATION: torch.ones(emb.shape[0]),
        Column.WRITE_NORM: emb.norm(dim=-1),
        Column.ACT_TIMES_GRAD: (emb * result.grads[hook].float()).sum(-1),
        Column.DIRECT_EFFECT: (emb * result.directs[hook].float()).sum(-1),
    }


def _stacked(result: ForwardResult, hooks: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(activations, gradients, direct-effect projections), each stacked over the layers' hooks."""
    act = torch.stack([result.activations[h] for h in hooks]).float()
    grad = torch.stack([result.grads[h] for h in hooks]).float()
    direct = torch.stack([result.directs[h] for h in hooks]).float()
    return act, grad, direct


def columns(model: LoadedModel, result: ForwardResult, kind: TableKind) -> dict[Column, torch.Tensor]:
    """Every node of ``kind``: embeddings ``[pos]``, neurons and latents ``[layer, pos, unit]``, heads
    ``[layer, head, query, key]`` (zero where key > query)."""
    if kind is TableKind.EMBEDDING:
        return _embedding_columns(result)
    layers = range(model.shape.n_layers)
    act, grad, direct = _stacked(result, [value_hook_of(model, kind, layer) for layer in layers])
    if kind is TableKind.ATTENTION_HEAD:  # [layer, head, query, key]
        v = torch.stack([result.activations[hook_names.attn_v(layer)] for layer in layers]).float()
        value_norms = torch.stack([value_write_norms(v[layer], model.w_o_grams[layer]) for layer in layers])
        norms = value_norms.transpose(1, 2)[:, :, None, :]  # [layer, head, 1, key]
    elif kind is TableKind.MLP_NEURON:
        norms = torch.stack(model.neuron_write_norms)[:, None, :]  # [layer, 1, d_mlp]
    else:
        ae = model.autoencoder_for(_LATENT_KINDS[kind])
        assert ae is not None
        norms = torch.stack(ae.write_norms)[:, None, :]  # [layer, 1, n_latents]
    return {
        Column.ACTIVATION: act,
        Column.WRITE_NORM: act * norms,
        Column.ACT_TIMES_GRAD: act * grad,
        Column.DIRECT_EFFECT: act * direct,
    }


# ---- picking ----------------------------------------------------------------------------------
def _entry(model: LoadedModel, kind: TableKind, shape: torch.Size, flat: int) -> TableEntry:
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat), shape)]
    if kind is TableKind.EMBEDDING:
        return TableEntry(kind, None, index[0], None)
    if kind is TableKind.ATTENTION_HEAD:
        layer, head, query, key = index
        return TableEntry(kind, NodeId(model.name, NodeKind.ATTENTION_HEAD, layer, head), query, key)
    layer, token, unit = index
    if kind is TableKind.MLP_NEURON:
        return TableEntry(kind, NodeId(model.name, NodeKind.MLP_NEURON, layer, unit), token, None)
    node_kind = _LATENT_KINDS[kind]
    ae = model.autoencoder_for(node_kind)
    assert ae is not None
    return TableEntry(kind, NodeId(model.name, node_kind, layer, unit, ae.name), token, None)


_BLOCK = 64


def extremes(flat: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(flat, k, largest)`` for a large 1-D tensor, in a fraction of its time.

    The k largest entries all lie in blocks (of 64) whose maximum is at least the k-th largest block
    maximum, since each of those k blocks holds an entry that large; so only those few blocks' entries
    need sorting. Same values as ``topk``; among exact ties the order may differ."""
    n = flat.numel()
    k = min(k, n)
    if n <= 64 * _BLOCK or k == 0:
        top = torch.topk(flat, k=k, largest=largest)
        return top.values, top.indices
    pad = -n % _BLOCK  # the last block padded with values never picked
    filler = float("-inf") if largest else float("inf")
    padded = torch.cat([flat, flat.new_full((pad,), filler)]) if pad else flat
    blocks = padded.view(-1, _BLOCK)
    edges = blocks.amax(dim=-1) if largest else blocks.amin(dim=-1)
    threshold = torch.topk(edges, k=k, largest=largest).values[-1]
    chosen = (edges >= threshold if largest else edges <= threshold).nonzero().flatten()  # [blocks]
    top = torch.topk(blocks[chosen].flatten(), k=k, largest=largest)
    indices = chosen[top.indices // _BLOCK] * _BLOCK + top.indices % _BLOCK
    return top.values, indices


def _candidates(values: torch.Tensor, kind: TableKind, k: int, largest: bool) -> list[tuple[float, TableKind, int]]:
    flat = values.flatten()
    top_values, top_indices = extremes(flat, k, largest)
    if kind is TableKind.ATTENTION_HEAD:
        # Keys after the query are not pairs (their values are zeros): should one be picked, pick again
        # with them masked out.
        n = values.shape[-1]
        if bool((top_indices % n > (top_indices // n) % n).any()):
            causal = torch.ones(n, n, dtype=torch.bool).tril().expand(values.shape).flatten()
            flat = flat.masked_fill(~causal, float("-inf") if largest else float("inf"))
            top_values, top_indices = extremes(flat, min(k, int(causal.sum())), largest)
    return [(float(v), kind, int(i)) for v, i in zip(top_values.tolist(), top_indices.tolist(), strict=True)]


def _picks(
    model: LoadedModel, tables: dict[TableKind, dict[Column, torch.Tensor]], k: int, per_kind: bool
) -> list[TableEntry]:
    order: list[TableEntry] = []
    seen: set[TableEntry] = set()
    for column in Column:
        for largest in (True, False):
            found: list[tuple[float, TableKind, int]] = []
            for kind, table in tables.items():
                found += _candidates(table[column], kind, k, largest)
            if not per_kind:  # TDB: the group's k extremes over every kind together
                found = sorted(found, key=lambda c: c[0], reverse=largest)[:k]
            for _, kind, flat in found:
                entry = _entry(model, kind, tables[kind][column].shape, flat)
                if entry not in seen:
                    seen.add(entry)
                    order.append(entry)
    return order


def _values(tables: dict[TableKind, dict[Column, torch.Tensor]], entry: TableEntry) -> NodeValues:
    table = tables[entry.kind]
    if entry.kind is TableKind.EMBEDDING:
        index: tuple[int, ...] = (entry.token,)
    elif entry.kind is TableKind.ATTENTION_HEAD:
        assert entry.node is not None and entry.key_token is not None
        index = (entry.node.layer, entry.node.index, entry.token, entry.key_token)
    else:
        assert entry.node is not None
        index = (entry.node.layer, entry.token, entry.node.index)
    return NodeValues(
        *(
            float(table[c][index])
            for c in (Column.ACTIVATION, Column.WRITE_NORM, Column.ACT_TIMES_GRAD, Column.DIRECT_EFFECT)
        )
    )


def node_table(
    model: LoadedModel, result: ForwardResult, kinds: Sequence[TableKind], k: int, per_kind: bool = False
) -> list[TableRow]:
    """The table's rows in TDB's order; ``result`` must hold ``table_hooks(kinds)``' captures, gradients
    and direct effects."""
    tables = {kind: columns(model, result, kind) for kind in kinds}
    return [TableRow(e, _values(tables, e)) for e in _picks(model, tables, k, per_kind)]


def compare_tables(
    model: LoadedModel,
    left: ForwardResult,
    right: ForwardResult,
    kinds: Sequence[TableKind],
    k: int,
    per_kind: bool = False,
) -> list[ComparisonRow]:
    """TDB's two-condition table: rows = the union of both sides' picks (left's first), each side's
    values for every row. Both prompts must have the same number of tokens."""
    left_tables = {kind: columns(model, left, kind) for kind in kinds}
    right_tables = {kind: columns(model, right, kind) for kind in kinds}
    entries = _picks(model, left_tables, k, per_kind)
    seen = set(entries)
    entries += [e for e in _picks(model, right_tables, k, per_kind) if e not in seen]
    return [ComparisonRow(e, _values(left_tables, e), _values(right_tables, e)) for e in entries]
