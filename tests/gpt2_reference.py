"""An independent GPT-2 for checking the debugger: plain torch on the HuggingFace checkpoint's tensors.

It shares no code with the server's inference path (no transformer-lens, no hooks): one function runs
the model in float64, keeps every intermediate the debugger's columns are defined on, and can detach a
LayerNorm scale or an attention side (Q, K, V) in place, so a test differentiates the very scalar the
original's definitions name with ``torch.autograd.grad`` and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from neuron_explainer.models.autoencoder import Autoencoder


@dataclass
class Weights:
    wte: torch.Tensor  # [vocab, d]
    wpe: torch.Tensor  # [ctx, d]
    layers: list[dict[str, torch.Tensor]]
    ln_f: tuple[torch.Tensor, torch.Tensor]
    n_heads: int
    eps: float

    @classmethod
    def load(cls, folder: str | Path) -> Weights:
        hf = GPT2LMHeadModel.from_pretrained(str(folder))
        state = {k: v.detach().to(torch.float64) for k, v in hf.state_dict().items()}
        n_layers, n_heads = hf.config.n_layer, hf.config.n_head
        layers = []
        for i in range(n_layers):
            p = f"transformer.h.{i}."
            layers.append({name: state[p + name] for name in _LAYER_KEYS})
        ln_f = (state["transformer.ln_f.weight"], state["transformer.ln_f.bias"])
        return cls(
            state["transformer.wte.weight"],
            state["transformer.wpe.weight"],
            layers,
            ln_f,
            n_heads,
            hf.config.layer_norm_epsilon,
        )

    def head_w_o(self, layer: int) -> torch.Tensor:  # [head, d_head, d_model]
        w = self.layers[layer]["attn.c_proj.weight"]  # [d_model (in: heads × d_head), d_model]
        return w.reshape(self.n_heads, -1, w.shape[1])


_LAYER_KEYS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


@dataclass
class InsertedAutoencoder:
    location: str  # mlp_post_act | resid_delta_mlp | resid_delta_attn
    layers: list[Autoencoder]


@dataclass
class Pass:
    embeddings: torch.Tensor  # [T, d]: token + position (resid_post_embedding)
    resid_pre: list[torch.Tensor] = field(default_factory=list)  # [T, d]
    resid_mid: list[torch.Tensor] = field(default_factory=list)
    scores: list[torch.Tensor] = field(default_factory=list)  # [head, q, k] pre-softmax
    pattern: list[torch.Tensor] = field(default_factory=list)  # [head, q, k]
    v: list[torch.Tensor] = field(default_factory=list)  # [T, head, d_head]
    attn_out: list[torch.Tensor] = field(default_factory=list)  # [T, d]
    mlp_pre: list[torch.Tensor] = field(default_factory=list)  # [T, d_mlp]
    mlp_post: list[torch.Tensor] = field(default_factory=list)
    latents: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # ("mlp"|"attn", L) -> [T, n]
    latent_pre: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    final_resid: torch.Tensor | None = None  # [T, d]
    logits: torch.Tensor | None = None  # [T, vocab]


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float, detach: bool) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    sigma = torch.sqrt(var + eps)
    if detach:
        sigma = sigma.detach()
    return (x - mu) / sigma * w + b


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh((2.0 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))


def _insert(ae: Autoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(new x, latents to differentiate, pre-activations): the decoded latents plus the reconstruction error."""
    enc = ae.encoder_weight.double()
    pre = (x - ae.pre_bias.double()) @ enc.T + ae.latent_bias.double()
    latents = torch.relu(pre)
    live = latents.clone()

    def decode(z: torch.Tensor) -> torch.Tensor:
        return z @ ae.decoder_weight.double().T + ae.pre_bias.double()

    return decode(live) + (x - decode(latents)), live, pre


def run(
    w: Weights,
    tokens: list[int],
    *,
    autoencoders: dict[str, InsertedAutoencoder] | None = None,
    ablate: dict[tuple[str, int], list[tuple[int, list[int], torch.Tensor | float]]] | None = None,
    detach_ln: frozenset[tuple[int | str, str]] = frozenset(),
    detach_sides: dict[int, frozenset[str]] | None = None,
    all_logits: bool = False,
) -> Pass:
    """One float64 forward with autograd on; logits at the last position only unless ``all_logits``. ``ablate[(what, layer)]``: (index, positions, value) with
    what in mlp/pattern/mlp_latent/attn_latent; ``detach_ln``: {(layer, "ln_1"|"ln_2"), ("final", "ln_f")};
    ``detach_sides[layer]``: subset of {"q", "k", "v"} detached in that layer."""
    autoencoders, ablate, detach_sides = autoencoders or {}, ablate or {}, detach_sides or {}
    n, heads = len(tokens), w.n_heads
    ids = torch.tensor(tokens)
    x = (w.wte[ids] + w.wpe[:n]).requires_grad_()  # a leaf: every gradient below flows back to it
    p = Pass(embeddings=x)
    causal = torch.ones(n, n, dtype=torch.bool).tril()

    def apply_ablations(what: str, layer: int, t: torch.Tensor) -> torch.Tensor:
        for index, positions, value in ablate.get((what, layer), []):
            t = t.clone()
            pos = positions or list(range(n))
            if what == "pattern":
                t[index, pos, :] = value if isinstance(value, float) else value.reshape(len(pos), n)
            else:
                t[pos, index] = value
        return t

    for layer, lw in enumerate(w.layers):
        p.resid_pre.append(x)
        sides = detach_sides.get(layer, frozenset())
        h_in = _ln(x, lw["ln_1.weight"], lw["ln_1.bias"], w.eps, (layer, "ln_1") in detach_ln)
        qkv = h_in @ lw["attn.c_attn.weight"] + lw["attn.c_attn.bias"]  # [T, 3d]
        q, k, v = (t.reshape(n, heads, -1) for t in qkv.split(qkv.shape[1] // 3, dim=1))
        q, k, v = (t.detach() if s in sides else t for t, s in ((q, "q"), (k, "k"), (v, "v")))
        scores = torch.einsum("qhe,khe->hqk", q, k) / q.shape[-1] ** 0.5
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        pattern = apply_ablations("pattern", layer, pattern)
        p.scores.append(scores)
        p.pattern.append(pattern)
        p.v.append(v)
        z = torch.einsum("hqk,khe->qhe", pattern, v).reshape(n, -1)
        attn_out = z @ lw["attn.c_proj.weight"] + lw["attn.c_proj.bias"]
        if "resid_delta_attn" in autoencoders:
            attn_out, lat, pre = _insert(autoencoders["resid_delta_attn"].layers[layer], attn_out)
            lat = apply_ablations("attn_latent", layer, lat)
            p.latents[("attn", layer)], p.latent_pre[("attn", layer)] = lat, pre
        p.attn_out.append(attn_out)
        x = x + attn_out
        p.resid_mid.append(x)
        h_mid = _ln(x, lw["ln_2.weight"], lw["ln_2.bias"], w.eps, (layer, "ln_2") in detach_ln)
        pre = h_mid @ lw["mlp.c_fc.weight"] + lw["mlp.c_fc.bias"]
        post = apply_ablations("mlp", layer, _gelu(pre))
        p.mlp_pre.append(pre)
        p.mlp_post.append(post)
        if "mlp_post_act" in autoencoders:
            post, lat, lpre = _insert(autoencoders["mlp_post_act"].layers[layer], post)
            lat = apply_ablations("mlp_latent", layer, lat)
            p.latents[("mlp", layer)], p.latent_pre[("mlp", layer)] = lat, lpre
        mlp_out = post @ lw["mlp.c_proj.weight"] + lw["mlp.c_proj.bias"]
        if "resid_delta_mlp" in autoencoders:
            mlp_out, lat, lpre = _insert(autoencoders["resid_delta_mlp"].layers[layer], mlp_out)
            lat = apply_ablations("mlp_latent", layer, lat)
            p.latents[("mlp", layer)], p.latent_pre[("mlp", layer)] = lat, lpre
        x = x + mlp_out
    p.final_resid = x
    h = _ln(x, w.ln_f[0], w.ln_f[1], w.eps, ("final", "ln_f") in detach_ln)
    p.logits = (h if all_logits else h[-1:]) @ w.wte.T  # [T or 1, vocab]
    return p


def loss(logits: torch.Tensor, kind: str, targets: list[int], distractors: list[int]) -> torch.Tensor:
    """The original's losses at the last position, written out again."""
    last = logits[-1]
    if kind == "ZERO":
        return 0.0 * logits.sum()
    if kind == "PROBS":
        return F.softmax(last, dim=-1)[targets].sum()
    value = last[targets].mean()
    if kind == "LOGIT_MINUS_MEAN":
        return value - last.mean()
    return value - last[distractors].mean() if distractors else value


# ---- the debugger's quantities, written out from their definitions -------------------------------
@dataclass(frozen=True)
class Trace:
    """What to differentiate: a loss, or a node's pre-activation (head pairs through a path)."""

    loss: tuple[str, list[int], list[int]] | None = None  # (kind, targets, distractors)
    node: tuple[str, int, int] | None = None  # ("mlp"|"head"|"mlp_latent"|"attn_latent", layer, index)
    token: int = 0
    key: int = 0
    path: str = "QK"  # Q | K | QK | V
    downstream: Trace | None = None
    detach: bool = True


def _detaches(trace: Trace) -> tuple[set[tuple[int | str, str]], dict[int, set[str]]]:
    ln: set[tuple[int | str, str]] = set()
    sides: dict[int, set[str]] = {}
    if trace.detach and (trace.node is None or (trace.path == "V" and trace.downstream is None)):
        ln.add(("final", "ln_f"))
    if trace.node is not None:
        what, layer, _ = trace.node
        if trace.detach:
            ln.add((layer, "ln_1" if what in ("head", "attn_latent") else "ln_2"))
        if what == "head":
            sides[layer] = {"Q": {"k"}, "K": {"q"}, "QK": set(), "V": {"q", "k"}}[trace.path]
    if trace.downstream is not None:
        more_ln, more_sides = _detaches(trace.downstream)
        ln |= {x for x in more_ln if x[0] != "final"}
        for layer, s in more_sides.items():
            sides.setdefault(layer, set()).update(s)
    return ln, sides


def read_point(p: Pass, trace: Trace) -> torch.Tensor:
    """The residual stream the target reads."""
    if trace.node is None:
        assert p.final_resid is not None
        return p.final_resid
    what, layer, _ = trace.node
    return p.resid_pre[layer] if what in ("head", "attn_latent") else p.resid_mid[layer]


def _latent_branch(
    w: Weights, aes: dict[str, InsertedAutoencoder], what: str, layer: int, index: int, trace: Trace, p: Pass
) -> torch.Tensor:
    """A latent's encoder pre-activation computed afresh from the residual stream before its layer, so
    the nodes of that layer in the main forward are not on its gradient path (the original's
    reconstitution; its act x grad for them is zero)."""
    lw, t = w.layers[layer], trace.token
    if what == "mlp_latent":
        x = _ln(p.resid_mid[layer][t], lw["ln_2.weight"], lw["ln_2.bias"], w.eps, trace.detach)
        source = _gelu(x @ lw["mlp.c_fc.weight"] + lw["mlp.c_fc.bias"])
        ae = aes["mlp_post_act"] if "mlp_post_act" in aes else aes["resid_delta_mlp"]
        if ae.location == "resid_delta_mlp":
            source = source @ lw["mlp.c_proj.weight"] + lw["mlp.c_proj.bias"]
    else:
        ae = aes["resid_delta_attn"]
        r = p.resid_pre[layer][: t + 1]
        x = _ln(r, lw["ln_1.weight"], lw["ln_1.bias"], w.eps, trace.detach)
        qkv = x @ lw["attn.c_attn.weight"] + lw["attn.c_attn.bias"]
        q, k, v = (m.reshape(t + 1, w.n_heads, -1) for m in qkv.split(qkv.shape[1] // 3, dim=1))
        probs = (torch.einsum("he,khe->hk", q[t], k) / q.shape[-1] ** 0.5).softmax(-1)
        z = torch.einsum("hk,khe->he", probs, v).reshape(-1)
        source = z @ lw["attn.c_proj.weight"] + lw["attn.c_proj.bias"]
    a = ae.layers[layer]
    return (source - a.pre_bias.double()) @ a.encoder_weight.double()[index] + a.latent_bias.double()[index]


def _node_scalar(w: Weights, p: Pass, trace: Trace, aes: dict[str, InsertedAutoencoder] | None = None) -> torch.Tensor:
    assert trace.node is not None
    what, layer, index = trace.node
    if what == "mlp":
        return p.mlp_pre[layer][trace.token, index]
    if what in ("mlp_latent", "attn_latent"):  # recomputed on a branch from the residual the latent reads
        assert aes is not None
        return _latent_branch(w, aes, what, layer, index, trace, p)
    if trace.path != "V":
        return p.scores[layer][index, trace.token, trace.key]
    if trace.downstream is None:
        assert trace.loss is not None and p.logits is not None
        inner = loss(p.logits, *trace.loss)
        at = p.final_resid
    else:
        inner = _node_scalar(w, p, trace.downstream, aes)
        at = read_point(p, trace.downstream)
    assert at is not None
    (g,) = torch.autograd.grad(inner, at, retain_graph=True)
    write = p.pattern[layer][index, trace.token, trace.key] * (p.v[layer][trace.key, index] @ w.head_w_o(layer)[index])
    return write @ g.detach()[trace.token]


def differentiate(
    w: Weights, tokens: list[int], trace: Trace, aes: dict[str, InsertedAutoencoder] | None = None
) -> tuple[Pass, torch.Tensor]:
    """The forward with the trace's detaches, and its scalar (still attached)."""
    ln, sides = _detaches(trace)
    p = run(
        w, tokens, autoencoders=aes, detach_ln=frozenset(ln), detach_sides={k: frozenset(v) for k, v in sides.items()}
    )
    if trace.node is None:
        assert trace.loss is not None and p.logits is not None
        return p, loss(p.logits, *trace.loss)
    return p, _node_scalar(w, p, trace, aes)


def _order(where: str, layer: int) -> int:
    return {"pre": 2 * layer, "mid": 2 * layer + 1, "post": 2 * layer + 2}[where]


def columns(
    w: Weights, tokens: list[int], trace: Trace, aes: dict[str, InsertedAutoencoder] | None = None
) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """(target scalar, {kind: {column: tensor}}) laid out as the server's node-table columns:
    embedding [T], mlp [L, T, m], head [L, h, q, k], mlp_latent / attn_latent [L, T, n]."""
    aes = aes or {}
    p, scalar = differentiate(w, tokens, trace, aes)
    n_layers = len(w.layers)
    wanted = [p.embeddings, read_point(p, trace), *p.mlp_post, *p.pattern]
    lat_keys = sorted(p.latents)
    wanted += [p.latents[k] for k in lat_keys]
    live = [t for t in wanted if t.requires_grad]  # a detached side (e.g. the pattern on path V) has none
    found = iter(torch.autograd.grad(scalar, live, allow_unused=True) if scalar.requires_grad else [None] * len(live))
    grads = [(next(found) if t.requires_grad else None) for t in wanted]
    grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, wanted, strict=True)]
    g_emb, g_read = grads[0], grads[1]
    g_mlp = grads[2 : 2 + n_layers]
    g_pat = grads[2 + n_layers : 2 + 2 * n_layers]
    g_lat = dict(zip(lat_keys, grads[2 + 2 * n_layers :], strict=True))
    if trace.node is None:
        read_at = _order("post", n_layers - 1)
    else:
        what, layer, _ = trace.node
        read_at = _order("pre" if what in ("head", "attn_latent") else "mid", layer)
    out: dict[str, dict[str, torch.Tensor]] = {}
    emb = p.embeddings.detach()
    out["embedding"] = {
        "activation": torch.ones(len(tokens), dtype=torch.float64),
        "write_norm": emb.norm(dim=-1),
        "act_times_grad": (emb * g_emb).sum(-1),
        "direct_effect": (emb * g_read).sum(-1),
    }
    mlp: dict[str, list[torch.Tensor]] = {
        c: [] for c in ("activation", "write_norm", "act_times_grad", "direct_effect")
    }
    head: dict[str, list[torch.Tensor]] = {c: [] for c in mlp}
    for layer in range(n_layers):
        lw = w.layers[layer]
        post = p.mlp_post[layer].detach()
        w_out = lw["mlp.c_proj.weight"]  # [d_mlp, d]
        precedes = _order("post", layer) <= read_at
        mlp["activation"].append(post)
        mlp["write_norm"].append(post * w_out.norm(dim=-1))
        mlp["act_times_grad"].append(post * g_mlp[layer])
        mlp["direct_effect"].append(post * (g_read @ w_out.T) if precedes else torch.zeros_like(post))
        a = p.pattern[layer].detach()
        v = p.v[layer].detach()
        w_o = w.head_w_o(layer)
        writes = torch.einsum("khe,hed->hkd", v, w_o)  # [head, key, d]
        head["activation"].append(a)
        head["write_norm"].append(a * writes.norm(dim=-1)[:, None, :])
        head["act_times_grad"].append(a * g_pat[layer])
        de = torch.einsum("hqk,hkd,qd->hqk", a, writes, g_read)
        head["direct_effect"].append(de if _order("mid", layer) <= read_at else torch.zeros_like(de))
    out["mlp"] = {c: torch.stack(v) for c, v in mlp.items()}
    out["head"] = {c: torch.stack(v) for c, v in head.items()}
    for family, kind in (("mlp", "mlp_latent"), ("attn", "attn_latent")):
        keys = [k for k in lat_keys if k[0] == family]
        if not keys:
            continue
        location = next(ae.location for ae in aes.values() if (ae.location == "resid_delta_attn") == (family == "attn"))
        cols: dict[str, list[torch.Tensor]] = {c: [] for c in mlp}
        for _, layer in keys:
            lat = p.latents[(family, layer)].detach()
            ae = next(a for a in aes.values() if a.location == location).layers[layer]
            dec = ae.decoder_weight.double().T  # [n, d_input]
            write = dec @ w.layers[layer]["mlp.c_proj.weight"] if location == "mlp_post_act" else dec  # [n, d]
            precedes = _order("mid" if family == "attn" else "post", layer) <= read_at
            cols["activation"].append(lat)
            cols["write_norm"].append(lat * write.norm(dim=-1))
            cols["act_times_grad"].append(lat * g_lat[(family, layer)])
            cols["direct_effect"].append(lat * (g_read @ write.T) if precedes else torch.zeros_like(lat))
        out[kind] = {c: torch.stack(v) for c, v in cols.items()}
    return scalar.detach(), out
