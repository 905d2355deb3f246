"""Models core: offline tokenizer, the fixed-seed toy, the registry, TDB autoencoder files, hook names.

Real files and real boots throughout (tiny-gpt2 through the same TransformerBridge path as gpt2-small).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from neuron_explainer.errors import BadInput, CorruptBlob, ModelNotLoaded
from neuron_explainer.models import hook_names
from neuron_explainer.models.autoencoder import (
    Autoencoder,
    load_tdb_autoencoder,
    omit_dead_latents,
    parse_tdb_autoencoder,
    save_tdb_autoencoder,
    tdb_state_dict,
)
from neuron_explainer.models.model_registry import list_autoencoder_names, load_model
from neuron_explainer.models.tokenizer import TOKENIZER_DIR, gpt2_tokenizer, verify_tokenizer_files
from neuron_explainer.models.toy import build_toy_model, ensure_toy_checkpoint
from neuron_explainer.nodes import NodeId, NodeKind

ZEROS = "0" * 40


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("ne-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(folder))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield folder


def test_tokenizer_is_gpt2_offline_and_checked() -> None:
    tok = gpt2_tokenizer()
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert len(tok) == 50257
    verify_tokenizer_files()


def test_tampered_tokenizer_file_fails_by_name(tmp_path: Path) -> None:
    shutil.copytree(TOKENIZER_DIR, tmp_path / "tok")
    with open(tmp_path / "tok" / "merges.txt", "a") as f:
        f.write("x y\n")
    with pytest.raises(RuntimeError, match="merges.txt"):
        verify_tokenizer_files(tmp_path / "tok")


def test_toy_model_is_deterministic() -> None:
    a, b = build_toy_model().state_dict(), build_toy_model().state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    build_toy_model()
    assert torch.equal(torch.rand(1), expected), "building the toy must not disturb the global RNG"


def test_toy_checkpoint_concurrent_writers_leave_one_complete_folder(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            results.append(ensure_toy_checkpoint(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    folder = results[0]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert [p.name for p in tmp_path.joinpath("models").iterdir()] == ["tiny-gpt2"], "temp folders left behind"
    (folder / "neuron-explainer-toy.json").write_text('{"name": "tiny-gpt2", "seed": 1}')
    with pytest.raises(RuntimeError, match="remove the folder"):
        ensure_toy_checkpoint(tmp_path)


def test_list_autoencoder_names() -> None:
    assert list_autoencoder_names("gpt2-small") == [
        "ae-mlp-post-act-v1",
        "ae-resid-delta-mlp-v1",
        "ae-mlp-post-act-v4",
        "ae-resid-delta-mlp-v4",
        "ae-resid-delta-attn-v4",
    ]
    assert list_autoencoder_names("tiny-gpt2") == ["ae-tiny-mlp", "ae-tiny-attn"]
    assert list_autoencoder_names("gpt2-xl") == []


def _random_ae(n: int, d: int, seed: int, **kw: object) -> Autoencoder:
    g = torch.Generator().manual_seed(seed)
    return Autoencoder(
        pre_bias=torch.randn(d, generator=g),
        encoder_weight=torch.randn(n, d, generator=g),
        latent_bias=torch.randn(n, generator=g),
        decoder_weight=torch.randn(d, n, generator=g),
        activation_frequency=torch.rand(n, generator=g) + 0.01,
        **kw,  # type: ignore[arg-type]
    )


def test_autoencoder_file_round_trip_and_formula(tmp_path: Path) -> None:
    ae = _random_ae(12, 5, 0)
    path = save_tdb_autoencoder(tmp_path / "0.pt", ae)
    state = torch.load(path, weights_only=True)
    assert sorted(state) == sorted(
        [
            "pre_bias",
            "encoder.weight",
            "latent_bias",
            "decoder.weight",
            "stats_last_nonzero",
            "latents_activation_frequency",
            "latents_mean_square",
            "activation",
        ]
    )
    assert state["stats_last_nonzero"].dtype == torch.int64
    loaded = load_tdb_autoencoder(path)
    x = torch.randn(3, 5)
    expected = torch.relu((x - state["pre_bias"]) @ state["encoder.weight"].T + state["latent_bias"])
    assert torch.allclose(loaded.encode(x), expected)
    assert torch.allclose(loaded.decode(expected), expected @ state["decoder.weight"].T + state["pre_bias"])


def test_topk_and_identity_activations(tmp_path: Path) -> None:
    topk = load_tdb_autoencoder(
        save_tdb_autoencoder(tmp_path / "k.pt", _random_ae(10, 4, 1, activation="TopK", topk_k=3))
    )
    x = torch.randn(6, 4)
    pre = (x - topk.pre_bias) @ topk.encoder_weight.T + topk.latent_bias
    z = topk.encode(x)
    assert ((z != 0).sum(dim=-1) <= 3).all()
    kept = torch.topk(pre, 3, dim=-1)
    assert torch.allclose(z.gather(-1, kept.indices), torch.relu(kept.values))
    ident = load_tdb_autoencoder(save_tdb_autoencoder(tmp_path / "i.pt", _random_ae(10, 4, 1, activation="Identity")))
    assert torch.allclose(ident.encode(x), (x - ident.pre_bias) @ ident.encoder_weight.T + ident.latent_bias)


def test_bad_autoencoder_files_fail_naming_file_and_key(tmp_path: Path) -> None:
    state = tdb_state_dict(_random_ae(8, 4, 2))
    missing = dict(state)
    del missing["latent_bias"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CorruptBlob, match="missing.pt.*'latent_bias'") as info:
        load_tdb_autoencoder(tmp_path / "missing.pt")
    assert info.value.fields["blob"].endswith("missing.pt")
    wrong = dict(state, **{"decoder.weight": torch.zeros(4, 7)})
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CorruptBlob, match=r"'decoder.weight' has shape \(4, 7\), expected \(4, 8\)"):
        load_tdb_autoencoder(tmp_path / "wrong.pt")
    with pytest.raises(CorruptBlob, match="not a torch state dict"):
        parse_tdb_autoencoder(b"not a pickle", "junk.pt")


def test_dead_latents_minimum_across_layers_dropped_from_the_end() -> None:
    layers = []
    for seed, n_dead in ((3, 3), (4, 5)):
        ae = _random_ae(16, 4, seed)
        ae.activation_frequency[16 - n_dead :] = 0.0
        layers.append(ae)
    kept = omit_dead_latents(layers, "test-ae")
    assert [ae.n_latents for ae in kept] == [13, 13]
    assert torch.equal(kept[1].encoder_weight, layers[1].encoder_weight[:13])
    dead = _random_ae(4, 2, 5)
    dead.activation_frequency.zero_()
    with pytest.raises(CorruptBlob, match="zero activation frequency"):
        omit_dead_latents([dead], "test-ae")


def test_tiny_autoencoders_are_written_as_tdb_files_and_loaded(home: Path) -> None:
    model = load_model("tiny-gpt2", device="cpu", mlp_autoencoder="ae-tiny-mlp", attn_autoencoder="ae-tiny-attn")
    assert model.n_latents(NodeKind.MLP_AUTOENCODER_LATENT) == 512
    assert model.n_latents(NodeKind.ATTENTION_AUTOENCODER_LATENT) == 256
    files = sorted(p.relative_to(home / "autoencoders") for p in (home / "autoencoders").rglob("*.pt"))
    assert [str(p) for p in files] == [
        f"sparse-autoencoder/tiny-gpt2/{loc}/autoencoders/{layer}.pt"
        for loc in ("mlp_post_act", "resid_delta_attn")
        for layer in (0, 1)
    ]
    on_disk = load_tdb_autoencoder(home / "autoencoders" / files[0])
    mlp_ae = model.mlp_autoencoder
    assert mlp_ae is not None and torch.equal(mlp_ae.layers[0].encoder_weight, on_disk.encoder_weight)
    assert model.shape.d_mlp == 256 and model.shape.n_ctx == 128 and model.name == "tiny-gpt2"
    with pytest.raises(BadInput, match="not valid for --attn_autoencoder_name"):
        load_model("tiny-gpt2", device="cpu", attn_autoencoder="ae-tiny-mlp")
    with pytest.raises(BadInput, match="known: ae-tiny-mlp, ae-tiny-attn"):
        load_model("tiny-gpt2", device="cpu", mlp_autoencoder="ae-resid-delta-mlp-v4")


def _seed_hf_cache(hf_home: Path) -> Path:
    repo = hf_home / "hub" / "models--gpt2"
    snapshot = repo / "snapshots" / ZEROS
    build_toy_model().save_pretrained(str(snapshot))
    gpt2_tokenizer().save_pretrained(str(snapshot))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(ZEROS)
    return snapshot


def test_gpt2_small_path_through_seeded_hf_cache(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = _seed_hf_cache(tmp_path / "hf")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # The original autoencoder names, read from a local root with the public layout (offline use).
    root = tmp_path / "ae-root"
    for layer in range(2):
        save_tdb_autoencoder(
            root / f"sparse-autoencoder/gpt2-small/resid_delta_mlp_v4/autoencoders/{layer}.pt",
            _random_ae(32, 64, layer),
        )
    monkeypatch.setenv("NEURON_EXPLAINER_AUTOENCODER_ROOT", str(root))
    model = load_model("gpt2-small", device="cpu", mlp_autoencoder="ae-resid-delta-mlp-v4")
    assert model.name == "gpt2-small"
    assert model.checkpoint == str(snapshot)
    assert model.shape.n_layers == 2
    assert model.n_latents(NodeKind.MLP_AUTOENCODER_LATENT) == 32
    tokens = torch.tensor([model.to_tokens("Hello world")])
    assert tokens.tolist() == [[15496, 995]]
    toy = build_toy_model()
    with torch.no_grad():
        assert torch.allclose(model.bridge(tokens), toy(tokens).logits, atol=1e-5)


def test_missing_model_fails_fast_and_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotLoaded) as info:
        load_model("gpt2-medium", device="cpu")
    assert time.monotonic() - start < 2.0
    message = info.value.message
    assert "'gpt2-medium'" in message and str(tmp_path / "empty-hf" / "hub") in message
    assert "HF_HUB_OFFLINE" in message and "folder" in message
    assert info.value.fields["hf_id"] == "gpt2-medium"
    with pytest.raises(BadInput, match="unknown model 'gpt3'"):
        load_model("gpt3", device="cpu")


def test_local_folder_loads_under_its_own_name(home: Path) -> None:
    folder = ensure_toy_checkpoint()
    model = load_model(str(folder), device="cpu")
    assert model.name == "tiny-gpt2" and model.checkpoint == str(folder)
    assert list_autoencoder_names(model.name) == ["ae-tiny-mlp", "ae-tiny-attn"]


def test_hook_names_for_nodes() -> None:
    neuron = NodeId("m", NodeKind.MLP_NEURON, 3, 7)
    head = NodeId("m", NodeKind.ATTENTION_HEAD, 1, 2)
    latent = NodeId("m", NodeKind.ATTENTION_AUTOENCODER_LATENT, 0, 9, "ae-tiny-attn")
    assert hook_names.hooks_for(neuron) == {"blocks.3.mlp.hook_post"}
    assert hook_names.hooks_for(head) == {"blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v"}
    assert hook_names.hooks_for(latent) == {"autoencoder.attn.0.hook_latents"}
    assert hook_names.value_hook(head) == "blocks.1.attn.hook_pattern"
    assert hook_names.ae_input("resid_delta_attn", 4) == "blocks.4.hook_attn_out"
    assert [
        hook_names.layer_of(h) for h in ("blocks.11.hook_mlp_out", "autoencoder.mlp.2.hook_latents", "hook_embed")
    ] == [
        11,
        2,
        None,
    ]
    with pytest.raises(ValueError, match="unknown autoencoder input location"):
        hook_names.ae_input("resid_post", 0)
