"""Collation throughput against bare forwards of the same batches, measured in one run.

The corpus is the shipped reference text repeated to ``--windows`` windows of 64 tokens; the best of
``--rounds`` rounds counts.

- **bare**: every window of the corpus once, in the builder's main-pass batches, run through the model up
  to the last collated layer (the forward collation cannot avoid; the unembedding, which collation skips,
  is excluded);
- **collate**: what ``DatasetBuilder.collect()`` does — the quantile pre-pass plus the main pass with
  every accumulator update. When the pre-pass's values fit in ``reuse_prepass_bytes`` (they do here:
  16 windows, ~160 MB) the main pass starts from them instead of forwarding those windows again, as a
  real run does. Writing records is a fixed cost per node, reported apart.

Bare and collation batches alternate one by one, so the load of a shared machine hits both alike.

Prints ``bench collate_throughput_ratio: <collate tok/s / bare tok/s> (target >= 0.7) PASS|FAIL`` for the
default model and kinds (the target is about a realistic model); other models print the ratio as information.

The bare forward is what the builder would cost with no collation at all: the same batches, through the
model up to the last needed layer (a stop hook on its residual output, no other hooks). The collation side
pays for everything else — capturing the hooks, extracting values (``attn_write_norm`` included), the
accumulator updates and the pre-pass.

At 256 windows every run is in its most expensive regime: nearly every window still enters every node's
top-K, random and quantile samples (64 + 32 + 40 slots against 256 windows). On a long corpus most windows
are rejected by one comparison per node, so a long run should do better (not measured here).

    .venv/bin/python bench/collate.py [--model gpt2-small-shape|tiny-gpt2] [--windows 256] [--batch_size 32]

The default model has GPT-2 small's shape (12 x 3072 neurons, 144 heads) with random fixed-seed weights:
what a real collation costs per token. ``tiny-gpt2`` with its two autoencoders is the worst case (a
forward of a d_model-64 model is nearly free, while its 1,536 latents + 512 neurons per window are not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from bench.lines import report  # noqa: E402
from neuron_explainer.collation.builder import CollationConfig, DatasetBuilder  # noqa: E402
from neuron_explainer.collation.corpus import Corpus  # noqa: E402
from neuron_explainer.collation.demo import all_kinds, reference_corpus  # noqa: E402
from neuron_explainer.collation.groups import capture, parse_kinds  # noqa: E402
from neuron_explainer.models import hook_names  # noqa: E402
from neuron_explainer.models.home import atomic_dir, neuron_explainer_home  # noqa: E402
from neuron_explainer.models.loaded_model import LoadedModel  # noqa: E402
from neuron_explainer.models.model_registry import load_model  # noqa: E402
from neuron_explainer.storage.local import LocalStore  # noqa: E402


def repeated_corpus(model: LoadedModel, windows: int, seq_len: int, folder: Path) -> Corpus:
    base = reference_corpus(model, seq_len)
    text = (ROOT / "neuron_explainer/collation/shipped_corpus/reference.txt").read_text()
    copies = -(-windows // base.n_windows)
    # Each copy gets a numbered heading so windows differ between copies (and tokens shift).
    (folder / "bench.txt").write_text("".join(f"Part {i}.\n{text}" for i in range(copies)))
    corpus = Corpus.read(folder / "bench.txt", model.to_tokens, seq_len=seq_len)
    return Corpus(corpus._tokens[: windows * seq_len], seq_len, corpus.hash, corpus.description)


def gpt2_small_shape() -> Path:
    """A GPT-2-small-shaped checkpoint with random (fixed-seed) weights: real gpt2-small cost, no download."""
    folder = neuron_explainer_home() / "bench" / "gpt2-small-shape"

    def build(tmp: Path) -> None:
        config = GPT2Config(  # type: ignore[call-arg]  # n_ctx goes through **kwargs (env recipe: required)
            n_layer=12, n_embd=768, n_head=12, n_positions=1024, n_ctx=1024, vocab_size=50257
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            GPT2LMHeadModel(config).save_pretrained(str(tmp))

    return atomic_dir(folder, build)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model",
        default="gpt2-small-shape",
        help="gpt2-small-shape (random fixed-seed GPT-2 small weights, built once), tiny-gpt2, or a name",
    )
    parser.add_argument(
        "--quantile_windows",
        type=int,
        default=None,
        help="pre-pass windows (default: 1/16 of --windows, the share a 16k-window corpus spends at 1024)",
    )
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--kinds", default="all", help="'all' or comma-separated kinds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    aes = {"mlp_autoencoder": "ae-tiny-mlp", "attn_autoencoder": "ae-tiny-attn"} if args.model == "tiny-gpt2" else {}
    name = str(gpt2_small_shape()) if args.model == "gpt2-small-shape" else args.model
    model = load_model(name, device=args.device, **aes)
    kinds = all_kinds(model) if args.kinds == "all" else parse_kinds(args.kinds, model)
    layers = list(range(model.shape.n_layers))
    pre = args.quantile_windows or max(1, args.windows // 16)
    config = CollationConfig(batch_size=args.batch_size, quantile_windows=pre, checkpoint_every_s=1e9)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = repeated_corpus(model, args.windows, config.seq_len, Path(tmp))
        tokens = corpus.n_tokens
        print(
            f"{model.name} on {model.device} ({torch.get_num_threads()} threads): "
            f"{corpus.n_windows} windows x {corpus.seq_len} tokens, batch {args.batch_size}, "
            f"kinds {[k.segment for k in kinds]}, "
            f"layers {layers}, pre-pass {min(config.quantile_windows, corpus.n_windows)} windows"
        )
        stop_hook = [hook_names.resid_post(layers[-1])]
        bare_times, collate_times, pre_times, write_time = [], [], [], 0.0
        for round_ in range(args.rounds):
            builder = DatasetBuilder(LocalStore(Path(tmp) / f"out{round_}"), model, corpus, kinds, layers, config)
            if round_ == 0:
                print(f"pre-pass values {'reused by' if builder.plan.reuse else 'recomputed in'} the main pass")
            start = time.perf_counter()
            boundaries, kept = await builder.estimate_boundaries()
            accs = builder.accumulators(boundaries)
            pre_times.append(time.perf_counter() - start)
            bare, collate = 0.0, 0.0
            for i, seqs in enumerate(builder.plan.main):  # alternate per batch: load drifts hit both
                start = time.perf_counter()
                capture(model, torch.from_numpy(corpus.take(seqs)), stop_hook)
                bare += time.perf_counter() - start
                start = time.perf_counter()
                builder.step(model, seqs, accs, kept.pop(i, None))
                collate += time.perf_counter() - start
            bare_times.append(bare)
            collate_times.append(pre_times[-1] + collate)
            if round_ == 0:
                start = time.perf_counter()
                await builder._write(accs)
                write_time = time.perf_counter() - start
            print(
                f"round {round_}: bare {bare:.2f} s; collate {collate_times[-1]:.2f} s "
                f"(pre-pass {pre_times[-1]:.2f} s + main pass {collate:.2f} s)"
            )
    bare_rate, collate_rate = tokens / min(bare_times), tokens / min(collate_times)
    n_records = sum(g.n_nodes for g in builder.groups)
    print(f"bare forwards: {bare_rate:,.0f} tok/s; collation: {collate_rate:,.0f} tok/s")
    print(f"writing {n_records} records: {write_time:.2f} s ({n_records / max(write_time, 1e-9):,.0f} rec/s)")
    ratio = collate_rate / bare_rate
    if args.model == "gpt2-small-shape" and args.kinds == "all":
        report("collate_throughput_ratio", ratio, ">=", 0.7)
    else:  # the target is set on a realistic model; other runs are information
        print(f"collate_throughput_ratio on {model.name}, kinds {args.kinds}: {ratio:.3f} (information, no target)")


if __name__ == "__main__":
    asyncio.run(main())
