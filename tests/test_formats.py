"""TDB record and explanation codecs on the hand-written fixtures of every legacy variant, plus normalization.

What each fixture covers is listed in tests/fixtures/tdb/README.md.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import orjson
import pytest

from neuron_explainer.activations.attention import unflatten_rows
from neuron_explainer.activations.codec import decode_neuron_record, encode_neuron_record
from neuron_explainer.activations.normalize import normalization_max, normalize
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.errors import CorruptBlob
from neuron_explainer.explanations.codec import decode_explanations, encode_explanations
from neuron_explainer.explanations.results import (
    ActivationScale,
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredExplanation,
    ScoredSequenceSimulation,
    ScoredSimulation,
    SequenceSimulation,
    preferred_score,
)
from tests.fixtures.synthetic import synthetic_blobs, synthetic_record

TDB = Path(__file__).parent / "fixtures" / "tdb"
MLP = "gpt2_small_data/collated-activations"
HEADS = "gpt2_small/attn_write_norm/collated-activations-by-token-pair"
LATENTS = "gpt2_small/autoencoder_latent/resid_delta_mlp_v4/collated-activations"
EXPLANATIONS = "gpt2_small_data/explanations"
HEAD_EXPLANATIONS = "gpt2_small/attn_write_norm/explanations"

RECORDS = [
    f"{MLP}/0/0.json",
    f"{MLP}/0/1.json",
    f"{MLP}/0/2.json",
    f"{MLP}/0/3.json",
    f"{MLP}/1/4.json",
    f"{MLP}/0/5.json",
    f"{MLP}/0/6.json",
    f"{MLP}/0/7.json",
    f"{HEADS}/0/0.json",
    f"{HEADS}/0/1.json",
    f"{LATENTS}/0/0.json",
]
CURRENT_RECORDS = [f"{MLP}/0/0.json", f"{HEADS}/0/0.json", f"{LATENTS}/0/0.json"]
EXPLANATION_FILES = [
    f"{EXPLANATIONS}/0/0.jsonl",
    f"{EXPLANATIONS}/0/1.jsonl",
    f"{EXPLANATIONS}/0/2.jsonl",
    f"{EXPLANATIONS}/0/3.jsonl",
    f"{HEAD_EXPLANATIONS}/0/0.jsonl",
    f"{HEAD_EXPLANATIONS}/0/1.jsonl",
]
CURRENT_EXPLANATIONS = [f"{EXPLANATIONS}/0/0.jsonl", f"{HEAD_EXPLANATIONS}/0/0.jsonl"]


def read(path: str) -> bytes:
    return (TDB / path).read_bytes()


def record(path: str) -> NeuronRecord:
    return decode_neuron_record(read(path), path)


# --- records: every variant decodes to what was written by hand ------------------------------------------


def test_current_variant_decodes_every_field() -> None:
    r = record(f"{MLP}/0/0.json")
    assert (r.layer, r.index) == (0, 0)
    assert r.most_positive_activation_records == [
        ActivationRecord(tokens=["In", " New", " York", ",", " the"], activations=[0.0, 3.5, 0.25, 1.0, -0.125]),
        ActivationRecord(tokens=[" York", " Times", " reported"], activations=[2.75, 0.5, 0.0]),
    ]
    assert r.random_sample[1] == ActivationRecord(tokens=["I", " think", " so"], activations=[-0.1, 0.02, 0.0])
    assert r.random_sample_by_quantile == [
        [ActivationRecord(tokens=["a", " b", " c"], activations=[0.0, 0.01, -0.02])],
        [ActivationRecord(tokens=[" New", " York", " City"], activations=[0.5, 1.25, 0.0])],
    ]
    assert r.quantile_boundaries == [0.0, 0.25, 1.0]
    assert (r.mean, r.variance, r.skewness, r.kurtosis) == (0.0625, 0.015625, 2.5, 9.75)
    assert r.max_activation == 3.5


def test_no_dataclass_name_matches_by_fields() -> None:
    r = record(f"{MLP}/0/1.json")
    assert (r.layer, r.index) == (0, 1)
    assert r.random_sample_by_quantile is None and r.quantile_boundaries is None
    assert r.most_positive_activation_records[0].tokens == [" dog", " cat", " bird", " fish"]
    assert r.kurtosis == 4.0


@pytest.mark.parametrize(("path", "layer", "index"), [(f"{MLP}/0/2.json", 0, 2), (f"{MLP}/0/3.json", 0, 3)])
def test_legacy_idx_and_layer_names(path: str, layer: int, index: int) -> None:
    r = record(path)
    assert (r.layer, r.index) == (layer, index)
    assert isinstance(r.layer, int)


def test_string_layer_index_is_cast_to_int() -> None:
    r = record(f"{MLP}/1/4.json")
    assert (r.layer, r.index) == (1, 4)
    assert type(r.layer) is int


def test_nan_tokens_in_moments_and_activations() -> None:
    r = record(f"{MLP}/0/5.json")
    assert all(math.isnan(m) for m in (r.mean, r.variance, r.skewness, r.kurtosis))
    assert r.random_sample[0].tokens == ["NaN", " is", " Infinity"]  # token text is not a number
    assert r.random_sample[0].activations[1] is math.nan
    encoded = encode_neuron_record(r)
    assert b'"mean":NaN' in encoded
    assert decode_neuron_record(encoded, "again") == r


def test_null_and_missing_moments_and_optional_fields() -> None:
    r = record(f"{MLP}/0/6.json")
    assert all(m is math.nan for m in (r.mean, r.variance, r.skewness, r.kurtosis))
    assert r.random_sample == []
    assert r.random_sample_by_quantile is None and r.quantile_boundaries is None
    assert r.max_activation == 2.0


def test_unknown_fields_integers_and_unicode() -> None:
    r = record(f"{MLP}/0/7.json")
    assert (r.layer, r.index) == (0, 7)
    assert r.random_sample[0].activations == [0.0, 1.0, 0.0]
    assert all(type(a) is float for a in r.random_sample[0].activations)
    assert r.random_sample_by_quantile == [
        [ActivationRecord(tokens=[" x", " y"], activations=[0.0, 0.25])],
        [],
    ]
    assert r.most_positive_activation_records[0].tokens == [" café", " 東京", " 🙂"]
    assert (r.mean, r.variance, r.kurtosis) == (0.0, 1.0, 2.0)


def test_head_and_latent_records_decode() -> None:
    head = record(f"{HEADS}/0/1.json")
    assert [len(a.activations) for a in head.most_positive_activation_records] == [12, 11]
    latent = record(f"{LATENTS}/0/0.json")
    assert latent.max_activation == 8.5


# --- records: round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDS)
def test_every_record_variant_round_trips(path: str) -> None:
    first = record(path)
    encoded = encode_neuron_record(first)
    second = decode_neuron_record(encoded, path)
    assert second == first
    assert encode_neuron_record(second) == encoded
    parsed = json.loads(encoded)
    assert parsed["dataclass_name"] == "NeuronRecord"
    assert parsed["neuron_id"] == {
        "neuron_index": first.index,
        "layer_index": first.layer,
        "dataclass_name": "NeuronId",
    }
    assert all(a["dataclass_name"] == "ActivationRecord" for a in parsed["most_positive_activation_records"])


@pytest.mark.parametrize("path", CURRENT_RECORDS)
def test_current_variant_is_written_byte_for_byte(path: str) -> None:
    assert encode_neuron_record(record(path)) == read(path)


def test_finite_records_are_strict_json_and_nan_records_are_python_json() -> None:
    finite = encode_neuron_record(record(f"{MLP}/0/0.json"))
    assert orjson.loads(finite)["mean"] == 0.0625
    nan = encode_neuron_record(record(f"{MLP}/0/6.json"))
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(nan)
    assert math.isnan(json.loads(nan)["mean"])


def test_tokens_with_lone_surrogates_survive() -> None:
    r = NeuronRecord(layer=0, index=0, most_positive_activation_records=[ActivationRecord(["\ud83d", "x"], [1.0, 0.0])])
    assert decode_neuron_record(encode_neuron_record(r), "s") == r


# --- records: corrupt data names the blob ---------------------------------------------------------------


def test_fixture_with_wrong_types_is_corrupt() -> None:
    path = f"{MLP}/0/98.json"
    with pytest.raises(CorruptBlob) as info:
        record(path)
    assert info.value.fields["blob"] == path
    assert info.value.fields["path"] == "most_positive_activation_records[0].activations[1]"
    assert path in info.value.message and "'high'" in info.value.message


def test_fixture_with_invalid_json_is_corrupt() -> None:
    path = f"{MLP}/0/99.json"
    with pytest.raises(CorruptBlob, match="not valid JSON") as info:
        record(path)
    assert info.value.extensions() == {"code": "CORRUPT_DATA", "blob": path}


def _good() -> dict:
    return json.loads(read(f"{MLP}/0/1.json"))


def _mutate(change: str) -> dict:
    d = _good()
    top = d["most_positive_activation_records"][0]
    if change == "tokens-not-strings":
        top["tokens"][1] = 7
    elif change == "bool-activation":
        top["activations"][0] = True
    elif change == "length-fits-no-layout":
        top["activations"] = [0.0] * 8  # 4 tokens: only 4, 7, 9 or 10 values fit (windows 1-4)
    elif change == "activations-not-a-list":
        top["activations"] = "0.0 1.0"
    elif change == "missing-tokens":
        del top["tokens"]
    elif change == "missing-neuron-id":
        del d["neuron_id"]
    elif change == "negative-index":
        d["neuron_id"]["neuron_index"] = -1
    elif change == "fractional-layer":
        d["neuron_id"]["layer_index"] = 1.5
    elif change == "word-layer":
        d["neuron_id"]["layer_index"] = "five"
    elif change == "wrong-dataclass-name":
        d["dataclass_name"] = "NeuronSimulationResults"
    elif change == "unrelated-object":
        d = {"hello": "world"}
    elif change == "random-sample-object":
        d["random_sample"] = {"activations": [], "tokens": []}
    elif change == "moment-string":
        d["mean"] = "0.5"
    return d


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("tokens-not-strings", "most_positive_activation_records[0].tokens[1]"),
        ("bool-activation", "most_positive_activation_records[0].activations[0]"),
        ("length-fits-no-layout", "most_positive_activation_records[0]"),
        ("activations-not-a-list", "most_positive_activation_records[0].activations"),
        ("missing-tokens", "most_positive_activation_records[0]"),
        ("missing-neuron-id", None),
        ("negative-index", "neuron_id.neuron_index"),
        ("fractional-layer", "neuron_id.layer_index"),
        ("word-layer", "neuron_id.layer_index"),
        ("wrong-dataclass-name", None),
        ("unrelated-object", None),
        ("random-sample-object", "random_sample"),
        ("moment-string", "mean"),
    ],
)
def test_malformed_records_raise_corrupt_blob_with_path(change: str, where: str | None) -> None:
    data = json.dumps(_mutate(change)).encode()
    with pytest.raises(CorruptBlob) as info:
        decode_neuron_record(data, "ds/0/1.json")
    assert info.value.fields["blob"] == "ds/0/1.json"
    assert info.value.fields.get("path") == where


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"[]", b"null", b"42", b'"text"', b"\xff\xfe{", b"{", b'{"neuron_id": {"layer_index": 0}}'],
)
def test_non_records_raise_corrupt_blob(data: bytes) -> None:
    with pytest.raises(CorruptBlob) as info:
        decode_neuron_record(data, "x.json")
    assert "x.json" in info.value.message


def test_infinite_activation_is_corrupt_but_infinite_moment_is_kept() -> None:
    d = _good()
    d["most_positive_activation_records"][0]["activations"][0] = math.inf
    with pytest.raises(CorruptBlob, match="finite"):
        decode_neuron_record(json.dumps(d).encode(), "b")
    d = _good()
    d["kurtosis"] = math.inf
    assert decode_neuron_record(json.dumps(d).encode(), "b").kurtosis == math.inf


def test_orjson_and_json_paths_agree() -> None:
    d = _good()
    via_orjson = decode_neuron_record(orjson.dumps(d), "a")
    d["mean"] = 0.01  # same data, but written with a NaN elsewhere forces the json path
    d["extra"] = math.nan
    via_json = decode_neuron_record(json.dumps(d).encode(), "a")
    assert via_orjson == via_json


# --- explanations ---------------------------------------------------------------------------------------


def explanations(path: str) -> NeuronSimulationResults | AttentionSimulationResults:
    return decode_explanations(read(path), path)


def test_current_explanations_decode_every_field() -> None:
    results = explanations(f"{EXPLANATIONS}/0/0.jsonl")
    assert isinstance(results, NeuronSimulationResults)
    assert (results.layer, results.index) == (0, 0)
    first, second = results.scored_explanations
    assert first.explanation == ' the city name "New York"'
    assert first.method is None
    assert preferred_score(first) == 0.75 and preferred_score(second) == 0.125
    assert first.scored_simulation is not None
    (scored_sequence,) = first.scored_simulation.scored_sequence_simulations
    assert scored_sequence.true_activations == [0.0, 3.5, 0.25]
    assert scored_sequence.ev_correlation_score == 0.81
    simulation = scored_sequence.sequence_simulation
    assert simulation.activation_scale is ActivationScale.NEURON_ACTIVATIONS
    assert simulation.distribution_values == [[0.0], [0.0, 5.0], [0.0, 2.0]]
    assert simulation.uncalibrated_simulation is not None
    assert simulation.uncalibrated_simulation.activation_scale is ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS
    assert simulation.uncalibrated_simulation.uncalibrated_simulation is None
    assert second.scored_simulation is not None and second.scored_simulation.rsquared_score is None


def test_legacy_explanations_without_dataclass_name() -> None:
    results = explanations(f"{EXPLANATIONS}/0/1.jsonl")
    assert isinstance(results, NeuronSimulationResults)
    (e,) = results.scored_explanations
    assert e.explanation == " animals" and preferred_score(e) == 0.3
    assert e.scored_simulation is not None
    nan_scored, zero_scored = e.scored_simulation.scored_sequence_simulations
    assert nan_scored.ev_correlation_score is math.nan
    assert nan_scored.sequence_simulation.activation_scale is ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS
    assert nan_scored.sequence_simulation.distribution_values == [[0.0, 1.0], [0.0, 1.0]]
    assert zero_scored.rsquared_score is None
    assert zero_scored.sequence_simulation.distribution_values == [[]]


def test_legacy_class_name_baseline_and_null_scores() -> None:
    results = explanations(f"{EXPLANATIONS}/0/2.jsonl")
    assert isinstance(results, NeuronSimulationResults)
    assert (results.layer, results.index) == (0, 2)
    scored, baseline = results.scored_explanations
    assert scored.explanation == " place names"
    assert preferred_score(scored) is None
    assert scored.scored_simulation is not None
    assert scored.scored_simulation.scored_sequence_simulations[0].ev_correlation_score is math.nan
    assert baseline == ScoredExplanation(explanation=None, scored_simulation=None)
    assert preferred_score(baseline) is None


def test_method_extension_is_read_and_written_only_when_set() -> None:
    results = explanations(f"{EXPLANATIONS}/0/3.jsonl")
    assert isinstance(results, NeuronSimulationResults)
    assert [e.method for e in results.scored_explanations] == ["top-tokens", None]
    encoded = encode_explanations(results)
    assert encoded.count(b'"method"') == 1
    plain = encode_explanations(explanations(f"{EXPLANATIONS}/0/0.jsonl"))
    assert b'"method"' not in plain


def test_attention_explanations_current_and_legacy() -> None:
    current = explanations(f"{HEAD_EXPLANATIONS}/0/0.jsonl")
    assert isinstance(current, AttentionSimulationResults)
    (e,) = current.scored_explanations
    assert preferred_score(e) == 1.0
    assert e.scored_attention_simulation is not None
    first, second = e.scored_attention_simulation.attention_simulations
    assert first.token_pair_coords == (1, 0) and first.token_pair_label == 1 and first.simulation_prediction == 0.9
    assert second.token_pair_coords == (3, 2) and second.token_pair_label == 0
    legacy = explanations(f"{HEAD_EXPLANATIONS}/0/1.jsonl")
    assert isinstance(legacy, AttentionSimulationResults)
    assert (legacy.layer, legacy.index) == (0, 1)
    assert legacy.scored_explanations[0].explanation == "attends to the previous token"
    assert preferred_score(legacy.scored_explanations[0]) is None


@pytest.mark.parametrize("path", EXPLANATION_FILES)
def test_every_explanation_variant_round_trips(path: str) -> None:
    first = explanations(path)
    encoded = encode_explanations(first)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    second = decode_explanations(encoded, path)
    assert second == first
    assert encode_explanations(second) == encoded
    top = json.loads(encoded)
    assert top["dataclass_name"] == type(first).__name__


@pytest.mark.parametrize("path", CURRENT_EXPLANATIONS)
def test_current_explanations_are_written_byte_for_byte(path: str) -> None:
    assert encode_explanations(explanations(path)) == read(path)


def test_nan_scores_round_trip_and_are_not_preferred() -> None:
    simulation = SequenceSimulation(["a"], [math.nan], ActivationScale.NEURON_ACTIVATIONS, [[0.0]], [[1.0]])
    results = NeuronSimulationResults(
        layer=3,
        index=9,
        scored_explanations=[
            ScoredExplanation(
                " x",
                ScoredSimulation(
                    [ScoredSequenceSimulation(simulation, [0.0], math.nan)], ev_correlation_score=math.nan
                ),
                method="baseline",
            )
        ],
    )
    encoded = encode_explanations(results)
    assert b"NaN" in encoded
    assert decode_explanations(encoded, "n") == results
    assert preferred_score(results.scored_explanations[0]) is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (read(f"{EXPLANATIONS}/0/99.jsonl"), "exactly one non-empty line, found 2"),
        (b"", "found 0"),
        (b"\n \r\n", "found 0"),
        (b"[1, 2]", "expected an object"),
        (b'{"scored_explanations": []}', "missing field 'neuron_id'"),
        (
            b'{"neuron_id": {"layer_index": 0, "neuron_index": 1}, "scored_explanations": {}}',
            "expected a list",
        ),
        (
            json.dumps(
                {
                    "neuron_id": {"layer_index": 0, "neuron_index": 1},
                    "scored_explanations": [{"explanation": 5, "scored_simulation": None}],
                }
            ).encode(),
            "expected a string",
        ),
        (
            json.dumps(
                {
                    "attention_id": {"layer_index": 0, "neuron_index": 1},
                    "scored_explanations": [
                        {
                            "explanation": "x",
                            "scored_attention_simulation": {
                                "attention_simulations": [
                                    {
                                        "tokens": [],
                                        "token_pair_coords": [1],
                                        "token_pair_label": 1,
                                        "simulation_prediction": 0.5,
                                    }
                                ]
                            },
                        }
                    ],
                }
            ).encode(),
            "expected \\[query, key\\]",
        ),
    ],
)
def test_malformed_explanations_raise_corrupt_blob(data: bytes, words: str) -> None:
    with pytest.raises(CorruptBlob, match=words) as info:
        decode_explanations(data, "expl/0/1.jsonl")
    assert info.value.fields["blob"] == "expl/0/1.jsonl"


def test_unknown_activation_scale_is_corrupt() -> None:
    line = read(f"{EXPLANATIONS}/0/0.jsonl").replace(b'"neuron_activations"', b'"volts"')
    with pytest.raises(CorruptBlob, match="unknown activation scale 'volts'") as info:
        decode_explanations(line, "e")
    assert info.value.fields["path"].endswith("sequence_simulation.activation_scale")


# --- normalization (reference §1) -----------------------------------------------------------------------


def _tdb_normalize(sequences: list[list[float]]) -> list[list[float]]:
    """The original formula, written out: max(x / (M - 1e-5), 0) with M = max(0, all values)."""
    m = max([0.0] + [x for s in sequences for x in s])
    return [[max(x / (m - 1e-5), 0) for x in s] for s in sequences]


def test_normalize_matches_the_original_formula_exactly() -> None:
    rng = random.Random(7)
    sequences = [[rng.uniform(-1.0, 3.0) for _ in range(rng.randint(0, 40))] for _ in range(12)]
    assert normalize(sequences) == _tdb_normalize(sequences)


def test_normalize_shares_one_maximum_across_sequences() -> None:
    top, rand = normalize([[0.0, 2.0, -1.0], [1.0]])
    assert top == [0.0, 2.0 / (2.0 - 1e-5), 0.0]
    assert rand == [1.0 / (2.0 - 1e-5)]
    assert top[1] > 1.0
    assert normalization_max([[0.0, 2.0, -1.0], [1.0]]) == 2.0


def test_normalize_without_positive_values_is_all_zero() -> None:
    assert normalize([[-1.0, -3.0], [0.0], []]) == [[0.0, 0.0], [0.0], []]
    assert normalize([]) == []
    assert normalization_max([[-2.0]]) == 0.0


def test_normalize_ignores_nan() -> None:
    assert normalize([[math.nan, 1.0]]) == [[0.0, 1.0 / (1.0 - 1e-5)]]


def test_normalize_flattened_pairs_then_unflatten() -> None:
    head = record(f"{HEADS}/0/0.json")
    sequences = [r.activations for r in head.most_positive_activation_records + head.random_sample]
    normalized = normalize(sequences)
    assert normalized == _tdb_normalize(sequences)
    rows = unflatten_rows(normalized[0], 4)
    assert rows[3][3] == 1.2 / (1.2 - 1e-5)


# --- synthetic records ----------------------------------------------------------------------------------


def test_synthetic_records_are_deterministic_and_readable() -> None:
    blobs = synthetic_blobs("gpt2_small_data/collated-activations/", 5, 3, seed=1)
    assert list(blobs) == [f"gpt2_small_data/collated-activations/5/{i}.json" for i in range(3)]
    assert blobs == synthetic_blobs("gpt2_small_data/collated-activations", 5, 3, seed=1)
    assert blobs != synthetic_blobs("gpt2_small_data/collated-activations", 5, 3, seed=2)
    r = decode_neuron_record(blobs["gpt2_small_data/collated-activations/5/2.json"], "s")
    assert (r.layer, r.index) == (5, 2)
    assert len(r.most_positive_activation_records) == 20 and len(r.random_sample) == 15
    assert all(len(a.tokens) == len(a.activations) == 64 for a in r.most_positive_activation_records)
    maxima = [max(a.activations) for a in r.most_positive_activation_records]
    assert maxima == sorted(maxima, reverse=True) and maxima[0] > 0.3


def test_synthetic_head_records_have_square_flattening() -> None:
    r = synthetic_record(2, 1, token_pair=True, n_tokens=8)
    assert all(len(a.activations) == 36 for a in r.random_sample)
    assert len(unflatten_rows(r.random_sample[0].activations, 8)[-1]) == 8


def test_current_field_name_wins_over_legacy_name() -> None:
    d = _good()
    d["neuron_id"] = {"idx": 9, "neuron_index": 1, "layer": "3", "layer_index": 0}
    r = decode_neuron_record(json.dumps(d).encode(), "both")
    assert (r.layer, r.index) == (0, 1)


def test_normalize_against_a_pool() -> None:
    shown = [[1.0, -1.0]]
    pool = [[1.0, -1.0], [4.0, math.nan]]
    assert normalize(shown, pool=pool) == [[1.0 / (4.0 - 1e-5), 0.0]]
    assert normalize(shown, pool=[[-2.0]]) == [[0.0, 0.0]]
    assert normalize([[1.0]], pool=[]) == [[0.0]]
