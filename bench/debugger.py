"""Debugger benchmark over HTTP, on real servers (uvicorn subprocesses).

1. ``debugger/<model> first ask``: a node-table query — every node kind the model has (tiny-gpt2: its two
   autoencoders' latents too), k = 20, a logit-difference target so a backward pass runs, plus one head's
   attention pattern — on a fresh 64-token prompt, end to end over HTTP (a keep-alive connection),
   against a bare forward + backward of the same model on the same tokens in this process
   (``bridge(tokens)``, the loss's gradient taken down to the embeddings, no hooks). Target ratio
   <= 1.5, for ``tiny-gpt2`` and a GPT-2-small-shaped model with random weights. Also printed, without
   a target: the ratio against a stricter baseline that unembeds only the last position.
2. ``debugger/<model> again``: the same query asked again on the same prompt and target with another
   head (what a researcher clicking through the table's heads does), against its first ask:
   target >= 10x faster (the server's pass cache answers it without running the model).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/debugger.py [--models tiny-gpt2,gpt2-small-shaped] [--quick]

Servers and this process pick the same device and the same number of torch threads. Each ratio is
measured in one run: first asks and bare passes alternate prompt by prompt.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402
from transformer_lens.hook_points import HookPoint  # noqa: E402

from bench.inference import _timed, gpt2_small_shaped, prompt_of  # noqa: E402
from bench.lines import report  # noqa: E402
from neuron_explainer.activation_server.model_service import engine_threads  # noqa: E402
from neuron_explainer.models import hook_names  # noqa: E402
from neuron_explainer.models.loaded_model import LoadedModel  # noqa: E402
from neuron_explainer.models.model_registry import load_model  # noqa: E402
from neuron_explainer.settings import ServerSettings  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

QUERY = """query($p: String!, $head: ID!, $kinds: [NodeTableKind!]) {
  prompt(text: $p, target: {targetTokens: [" the"], distractorTokens: [" a"]}) {
    nodeTable(k: 20, kinds: $kinds) { kind node { id } token keyToken activation writeNorm actTimesGrad directEffect }
    attentionPattern(nodeId: $head)
  }
}"""


JSON = {"Content-Type": "application/json"}


def _bare(model: LoadedModel, tokens: torch.Tensor, target: int, distractor: int, last_only: bool) -> None:
    """Forward, then the logit difference's gradient down to the embeddings: what any debugger must run."""
    kept: dict[str, torch.Tensor] = {}

    def keep(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        kept["x"] = tensor
        return tensor

    point = model.hook_point(hook_names.embeddings())
    point.add_hook(keep, level=7)
    try:
        with torch.enable_grad():
            if last_only:
                logits = model.bridge(tokens, logits_to_keep=torch.tensor([tokens.shape[1] - 1], device=tokens.device))
            else:
                logits = model.bridge(tokens)
            loss = logits[0, -1, target] - logits[0, -1, distractor]
            torch.autograd.grad(loss, kept["x"])
    finally:
        point.remove_hooks("fwd", level=7)


def bench_model(name: str, model_arg: str, data_root: str, repeats: int) -> bool:
    aes = (
        ["--mlp_autoencoder_name", "ae-tiny-mlp", "--attn_autoencoder_name", "ae-tiny-attn"]
        if name == "tiny-gpt2"
        else []
    )
    model = load_model(model_arg, mlp_autoencoder=aes[1] if aes else None, attn_autoencoder=aes[3] if aes else None)
    kinds = ["EMBEDDING", "MLP_NEURON", "ATTENTION_HEAD"]
    if aes:
        kinds += ["MLP_AUTOENCODER_LATENT", "ATTENTION_AUTOENCODER_LATENT"]
    target, distractor = model.to_tokens(" the")[0], model.to_tokens(" a")[0]
    layers = model.shape.n_layers
    texts = [prompt_of(model, 64, offset=i) for i in range(repeats + 2)]
    first: list[float] = []
    again: list[float] = []
    bare: list[float] = []
    bare_last: list[float] = []
    with (
        ServerProcess(["--model_name", model_arg, "--data_root", data_root, *aes]) as server,
        httpx.Client(timeout=300) as client,
    ):

        def ask(text: str, i: int) -> None:
            variables = {
                "p": text,
                "head": f"{model.name}/attention_head/{i % layers}/{(3 * i) % model.shape.n_heads}",
                "kinds": kinds,
            }
            payload = orjson.dumps({"query": QUERY, "variables": variables})
            response = client.post(f"{server.url}/graphql", content=payload, headers=JSON)
            body = orjson.loads(response.content)  # a fast client: the server's time, not the client's
            assert "errors" not in body, body
            assert len(body["data"]["prompt"]["nodeTable"]) >= 40

        def forwards() -> int:
            stats = client.post(f"{server.url}/graphql", json={"query": "{ engineStats { forwardCount } }"}).json()
            return int(stats["data"]["engineStats"]["forwardCount"])

        for text in texts[:2]:  # warm-up: both paths, both kinds of ask
            ask(text, 0)
            ask(text, 1)
            _bare(model, torch.tensor([model.to_tokens(text)], device=model.device), target, distractor, False)
        before = forwards()
        for text in texts[2:]:
            tokens = torch.tensor([model.to_tokens(text)], device=model.device)
            assert tokens.shape[1] == 64
            bare.append(_timed(functools.partial(_bare, model, tokens, target, distractor, False), model))
            first.append(_timed(functools.partial(ask, text, 0), model))
            again.append(_timed(functools.partial(ask, text, 1), model))
            bare_last.append(_timed(functools.partial(_bare, model, tokens, target, distractor, True), model))
        passes = forwards() - before
    med = {
        k: statistics.median(v) * 1000
        for k, v in (("first", first), ("again", again), ("bare", bare), ("last", bare_last))
    }
    print(
        f"  {name} on {model.device}, {len(kinds)} node kinds, k=20, 64 tokens: first ask {med['first']:.2f} ms, "
        f"asked again {med['again']:.2f} ms, bare forward+backward {med['bare']:.2f} ms (last position only "
        f"{med['last']:.2f} ms); {passes} passes for {2 * repeats} asks (medians of {repeats})",
        flush=True,
    )
    print(f"  {name}: first ask / last-position-only forward+backward {med['first'] / med['last']:.3f} (info)")
    ok = report(f"debugger/{name} first ask/bare forward+backward", med["first"] / med["bare"], "<=", 1.5)
    return report(f"debugger/{name} first ask/asked again", med["first"] / med["again"], ">=", 10) and ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny-gpt2,gpt2-small-shaped")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    threads = engine_threads(ServerSettings())
    torch.set_num_threads(threads)  # the baseline gets what the server's engine gets
    print(f"  {os.cpu_count()} cores, {threads} torch threads, CUDA {'on' if torch.cuda.is_available() else 'off'}")
    ok = True
    with tempfile.TemporaryDirectory() as data_root:  # an empty data root: no dataset, no network
        for name in args.models.split(","):
            model_arg = gpt2_small_shaped() if name == "gpt2-small-shaped" else name
            repeats = 5 if args.quick else (30 if name == "tiny-gpt2" else 12)
            ok &= bench_model(name, model_arg, data_root, repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
