"""Truncated attention windows read as the original writes them (reference §2.4): a record of n tokens and
window W is TDB's ``flatten_lower_triangle`` of an n x W matrix, so flat positions follow
``torch.tril_indices(n, W)`` and row i holds keys 0 .. min(i, W - 1). The fixture holds all 66 truncated
layouts with n <= 12, computed by that function; the explain and score prompts must mark those pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.explanations.attention_pairs import all_pairs, mark_pair, pair_coords, top_pairs
from neuron_explainer.explanations.attention_prompts import build_attention_explain_prompt
from neuron_explainer.explanations.attention_scoring import AttentionPairScorer, candidate_pairs
from neuron_explainer.explanations.no_llm import TokenLookupPairPredictor, TopPairsExplainer

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "tdb" / "truncated_attention_layouts.json").read_text())
LAYOUTS = FIXTURE["layouts"]


def test_fixture_covers_every_truncated_layout_up_to_twelve_tokens() -> None:
    assert len(LAYOUTS) == 66 and {(x["n_tokens"], x["window"]) for x in LAYOUTS} == {
        (n, w) for n in range(2, 13) for w in range(1, n)
    }


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: f"n{x['n_tokens']}w{x['window']}")
def test_pair_coords_is_the_original_layout(layout: dict[str, object]) -> None:
    pairs = [tuple(p) for p in layout["pairs"]]  # type: ignore[attr-defined]
    assert pair_coords(int(layout["n_tokens"]), len(pairs)) == pairs  # type: ignore[call-overload]


def test_three_tokens_window_two_flat_three_is_query_two_key_zero() -> None:
    assert pair_coords(3, 5)[3] == (2, 0)


def _truncated_head(n: int = 7, window: int = 3, hot: tuple[int, int] = (6, 1)) -> tuple[NeuronRecord, list[str]]:
    """A head whose single strong pair is ``hot`` (query, key) in a truncated row."""
    tokens = [f" t{k}" for k in range(n)]
    layout = next(x for x in LAYOUTS if x["n_tokens"] == n and x["window"] == window)
    flat = [0.9 if tuple(p) == hot else 0.01 for p in layout["pairs"]]
    records = [ActivationRecord(list(tokens), list(flat)) for _ in range(20)]
    return NeuronRecord(layer=0, index=0, most_positive_activation_records=records, random_sample=records[:15]), tokens


def test_explain_prompt_marks_the_pair_where_the_original_puts_it() -> None:
    record, tokens = _truncated_head()
    (pair,) = top_pairs(record.most_positive_activation_records[:1], 1)
    assert (pair.query, pair.key) == (6, 1)  # a sliding window would have read key 5
    messages = build_attention_explain_prompt(record.most_positive_activation_records[:1], [pair])
    assert mark_pair(tokens, 6, 1) in messages[-1]["content"] and "**t1**" in messages[-1]["content"]
    assert "[[t6]]" in messages[-1]["content"]


async def test_score_prompt_pairs_and_no_llm_methods_use_the_original_layout() -> None:
    record, _ = _truncated_head()
    labelled = candidate_pairs(record.most_positive_activation_records[2::4], record.max_activation)
    positives = {(c.pair.query, c.pair.key) for c in labelled if c.label == 1}
    assert (6, 1) in positives
    assert {(p.query, p.key) for p in all_pairs(record.most_positive_activation_records[:1])} <= {
        (i, j) for i in range(7) for j in range(min(i + 1, 3))
    }
    explained = await TopPairsExplainer(n_pairs=1).explain(record)
    assert explained.text == 'attends to " t1" from " t6"'
    scored = await AttentionPairScorer(TokenLookupPairPredictor()).score(
        explained.text, record.most_positive_activation_records[2::4], record.max_activation
    )
    hot = [s for s in scored.attention_simulations if s.token_pair_coords == (6, 1)]
    assert hot and all(s.simulation_prediction == 1.0 for s in hot)
