"""``Node.outputTokens`` / ``Node.inputTokens``: the weight-based logit lens (``inference/logit_lens.py``).

No prompt: the vocabulary scores of a node are computed once where the model lives and kept in the
server's lens cache (per node, direction and path), so any ``k`` or ``lowest`` afterwards is a topk.
"""

from __future__ import annotations

import asyncio
import functools

from neuron_explainer.errors import BadInput, ModelNotLoaded
from neuron_explainer.inference.targets import AttentionPath
from neuron_explainer.inference.values import TokenScore
from neuron_explainer.nodes import NodeId
from neuron_explainer.resolvers.context import Context

MAX_K = 1000


async def lens_tokens(
    ctx: Context, node: NodeId, k: int, lowest: bool, inputs: bool, path: AttentionPath | None = None
) -> list[TokenScore]:
    from neuron_explainer.inference import live, logit_lens

    what = "inputTokens" if inputs else "outputTokens"
    engine, model, cache = ctx.services.engine, ctx.services.model, ctx.services.lens
    if engine is None or model is None or cache is None:
        raise ModelNotLoaded(f"{what} needs the live model's weights (--run_model False)", field=what)
    if not 1 <= k <= MAX_K:
        raise BadInput(f"k must be within 1..{MAX_K}, got {k}", argument="k")
    live.check_node(model, node)
    ctx.cacheable = False
    if inputs:
        compute = functools.partial(logit_lens.input_token_scores, node=node, path=path)
    else:
        compute = functools.partial(logit_lens.output_token_scores, node=node)
    key = (str(node), what, path.value if path is not None else "")
    scores = await cache.get_or_load(key, lambda t: t.element_size() * t.nelement(), lambda: engine.call(compute))
    assert scores is not None
    return await asyncio.to_thread(logit_lens.top_tokens, model, scores, k, lowest)
