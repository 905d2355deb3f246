"""detection, fuzzing and embedding on hand-built nodes whose answers are known: a perfect explanation
scores 1.0, an uninformative one 0.5, a reversed one 0.0. The LLM scorers go through the real openai SDK
to the fake server (``tests/fake_openai.py``), the embedding scorer through the real local model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from neuron_explainer.errors import BadInput, LlmBadReply, ModelNotLoaded
from neuron_explainer.explanations import embeddings as embeddings_module
from neuron_explainer.explanations.classifiers import EmbeddingScorer, LlmClassifierScorer
from neuron_explainer.explanations.embeddings import PACKAGE, SentenceEmbedder
from neuron_explainer.explanations.examples import MIN_NON_ACTIVATING, select_examples
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.metrics import ScoringInputError, binary_metrics, roc_auc, spearman
from neuron_explainer.explanations.outcomes import SequenceSimulated
from neuron_explainer.explanations.scoring import correlation_score, rsquared_score
from neuron_explainer.nodes import NodeKind
from tests.fake_openai import CHAT, FakeOpenAI
from tests.scorer_records import VOCAB, cat_neuron, same_texts_neuron, topic_neuron

pytestmark = pytest.mark.usefixtures("calm_fake")

EVERY_OTHER_WORD = "the words " + ", ".join(w.strip() for w in VOCAB) + ", money"


@pytest.fixture
async def llm(fake: tuple[FakeOpenAI, str]) -> AsyncIterator[LlmClient]:
    client = LlmClient(LlmSettings(api_key="test", base_url=fake[1], max_retries=1, backoff_initial_s=0.01))
    yield client
    await client.close()


async def _score(scorer: object, explanation: str, record: object) -> tuple[float | None, list[SequenceSimulated]]:
    seen: list[SequenceSimulated] = []

    async def on_sequence(s: SequenceSimulated) -> None:
        seen.append(s)

    outcome = await scorer.score(explanation, record, max_sequences=None, on_sequence=on_sequence)  # type: ignore[attr-defined]
    return outcome.score, seen


@pytest.mark.parametrize(
    ("explanation", "expected"),
    [("the word cat", 1.0), ("the word sat", 0.5), ("the word money", 0.0), ("the word zebra", 0.5)],
)
async def test_detection_balanced_accuracy(
    llm: LlmClient, fake: tuple[FakeOpenAI, str], explanation: str, expected: float
) -> None:
    scorer = LlmClassifierScorer(llm, "detection")
    calls = fake[0].count(CHAT)
    score, seen = await _score(scorer, explanation, cat_neuron())
    assert score == expected
    assert len(seen) == scorer.planned_sequences(cat_neuron(), None) == 20
    assert sorted(s.index for s in seen) == list(range(20)) and seen[-1].running_score == expected
    # 5 excerpts a call, shuffled so labels are not in blocks; the answers stored match the labels seen
    assert fake[0].count(CHAT) - calls == 4
    assert {s.actual[0] for s in seen[:5]} == {0.0, 1.0} or {s.actual[0] for s in seen[5:10]} == {0.0, 1.0}


async def test_detection_stores_precision_and_recall(llm: LlmClient) -> None:
    scorer = LlmClassifierScorer(llm, "detection")
    outcome = await scorer.score("the word sat", cat_neuron(), max_sequences=None, on_sequence=None)
    scored = outcome.scored
    assert scored.precision == 0.5 and scored.recall == 0.5 and scored.f1_score == 0.5  # type: ignore[union-attr]
    sources = {e.source for e in scored.examples}  # type: ignore[union-attr]
    assert sources == {"top", "random"} and sum(e.label for e in scored.examples) == 10  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("explanation", "expected"), [("the word cat", 1.0), ("the word zebra", 0.5), (EVERY_OTHER_WORD, 0.0)]
)
async def test_fuzzing_balanced_accuracy(llm: LlmClient, explanation: str, expected: float) -> None:
    score, seen = await _score(LlmClassifierScorer(llm, "fuzzing"), explanation, cat_neuron())
    assert score == expected and len(seen) == 20


async def test_fuzzing_marks_active_tokens_on_positives_only(llm: LlmClient) -> None:
    outcome = await LlmClassifierScorer(llm, "fuzzing").score(
        "the word cat", cat_neuron(), max_sequences=None, on_sequence=None
    )
    for example in outcome.scored.examples:  # type: ignore[union-attr]
        marked = {example.tokens[i] for i in example.highlighted or []}
        assert marked and (marked == {" cat"}) == (example.label == 1)


async def test_classifier_reply_that_never_parses_fails_and_is_not_scored(
    llm: LlmClient, fake: tuple[FakeOpenAI, str]
) -> None:
    fake[0].inject(CHAT, *["short"] * 12)
    with pytest.raises(LlmBadReply, match="answers for 5 excerpts"):
        await LlmClassifierScorer(llm, "detection", concurrency=1).score(
            "the word cat", cat_neuron(), max_sequences=None, on_sequence=None
        )


async def test_embedding_auc_with_the_real_model(embedder: SentenceEmbedder) -> None:
    scorer = EmbeddingScorer(embedder)
    perfect, seen = await _score(scorer, "cats and kittens", topic_neuron())
    reversed_, _ = await _score(scorer, "stock markets, banks and money", topic_neuron())
    unrelated, _ = await _score(scorer, "cats and kittens", same_texts_neuron())
    assert perfect == 1.0 and reversed_ == 0.0 and unrelated == 0.5
    assert len(seen) == 12 and all(-1.0 <= s.predicted[0] <= 1.0 for s in seen)


async def test_embedding_runs_off_the_event_loop_and_coalesces(embedder: SentenceEmbedder) -> None:
    import asyncio
    import threading

    calls = embedder.encode_calls
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()
    original = embedder._encode

    def spy(texts: list[str]) -> object:
        seen_threads.add(threading.get_ident())
        return original(texts)

    embedder._encode = spy  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*(embedder.embed([f"text number {i}", "another"]) for i in range(20)))
    finally:
        embedder._encode = original  # type: ignore[method-assign]
    assert all(r.shape == (2, 384) for r in results)
    assert loop_thread not in seen_threads
    assert embedder.encode_calls - calls < 20  # concurrent requests shared forwards


async def test_embedding_without_its_package_is_model_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings_module, "embedding_package_installed", lambda: False)
    with pytest.raises(ModelNotLoaded, match=PACKAGE) as caught:
        MethodRegistry(None, embedder=SentenceEmbedder()).scorer("embedding", NodeKind.MLP_NEURON)
    assert caught.value.code == "MODEL_NOT_LOADED" and caught.value.fields["package"] == PACKAGE


def test_too_few_non_activating_records_says_how_many_are_needed() -> None:
    record = cat_neuron(n_random=3)
    with pytest.raises(BadInput, match=f"needs at least {MIN_NON_ACTIVATING} non-activating records") as caught:
        select_examples(record, "detection")
    assert caught.value.fields["needed"] == MIN_NON_ACTIVATING and caught.value.fields["found"] == 3


def test_max_sequences_keeps_both_kinds() -> None:
    examples = select_examples(cat_neuron(), "detection", max_examples=6)
    assert len(examples) == 6 and sum(e.activating for e in examples) == 3
    with pytest.raises(BadInput, match="at least 2 examples"):
        select_examples(cat_neuron(), "detection", max_examples=1)


def test_fuzzing_refuses_attention_heads() -> None:
    with pytest.raises(BadInput, match="per token pair"):
        MethodRegistry(LlmClient(LlmSettings(api_key="x"))).scorer("fuzzing", NodeKind.ATTENTION_HEAD)


def test_metrics_refuse_mismatched_lengths_and_non_finite_values() -> None:
    with pytest.raises(ScoringInputError, match="3 real values against 2 predicted"):
        correlation_score([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ScoringInputError, match="predicted value 1 is nan"):
        correlation_score([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ScoringInputError, match="real value 0 is inf"):
        rsquared_score([float("inf"), 2.0], [1.0, 2.0])
    with pytest.raises(BadInput):  # a client sees BAD_USER_INPUT
        binary_metrics([1, 0], [1])
    with pytest.raises(ValueError):  # a notebook can catch a ValueError
        roc_auc([0, 1], [0.5])


def test_binary_metrics_and_rank_correlation_against_direct_computation() -> None:
    m = binary_metrics([1, 1, 1, 0, 0], [1, 0, 1, 0, 1])
    assert (m.true_positives, m.true_negatives, m.false_positives, m.false_negatives) == (2, 1, 1, 1)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert binary_metrics([1, 1], [1, 1]).balanced_accuracy is None  # one class: undefined
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    stats = pytest.importorskip("scipy.stats")  # installed with the [embeddings] extra
    for a, b in [([1, 2, 2, 3], [1, 3, 2, 4]), ([0.3, 0.1, 0.9, 0.5, 0.5], [2.0, 1.0, 3.0, 0.0, 5.0])]:
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1.0], [2.0]) is None
