"""The Serve application of the model's replicas, as the server deploys it and as a Serve config names it.

``application(...)`` is what ``RayBackend.start`` passes to ``serve.run``. ``build`` is the same application
for a Serve config file, e.g. KubeRay's ``RayService`` (``deploy/kuberay/``)::

    applications:
      - name: neuron-explainer
        import_path: neuron_explainer.inference.ray_app:build
        args: {model_name: gpt2-small, mlp_autoencoder_name: ae-resid-delta-mlp-v4, max_batch_size: 16}
        deployments:
          - name: ModelReplica
            num_replicas: 2
            ray_actor_options: {num_gpus: 1}

A server then uses it with ``--ray_app_name neuron-explainer`` instead of deploying its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neuron_explainer.errors import BadInput
from neuron_explainer.inference.ray_replica import ModelReplica, ReplicaConfig

DEPLOYMENT = "ModelReplica"


def application(
    replica: ReplicaConfig,
    *,
    replicas: int = 1,
    cpus: float = 1.0,
    gpus: float = 0.0,
    resources: Mapping[str, float] | None = None,
) -> Any:
    """The ``serve.Application``: ``replicas`` copies of ``ModelReplica``, each reserving what it is given."""
    from ray import serve

    actor: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if resources:
        actor["resources"] = dict(resources)
    deployment = serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options=actor,
        # Enough requests in flight per replica for its engine to fill batches.
        max_ongoing_requests=max(2 * replica.max_batch_size, 8),
        max_constructor_retry_count=2,
        health_check_period_s=2.0,
        health_check_timeout_s=30.0,
        graceful_shutdown_timeout_s=5.0,
    )(ModelReplica)
    return deployment.bind(replica)


_ARGS = {
    "model_name": str,
    "mlp_autoencoder_name": str,
    "attn_autoencoder_name": str,
    "max_batch_size": int,
    "max_batch_wait_ms": float,
    "torch_threads": int,
}


def build(args: Mapping[str, Any]) -> Any:
    """A Serve config's application builder: ``args`` are the server's flags of the same names; the number
    of replicas and their resources come from the config's ``deployments`` section (Serve's own)."""
    unknown = sorted(set(args) - set(_ARGS))
    if unknown or "model_name" not in args:
        raise BadInput(f"args need model_name; known: {', '.join(_ARGS)}; unknown: {', '.join(unknown) or 'none'}")
    value = {k: _ARGS[k](v) for k, v in args.items() if v is not None}
    replica = ReplicaConfig(
        value["model_name"],
        value.get("mlp_autoencoder_name"),
        value.get("attn_autoencoder_name"),
        value.get("max_batch_size", 16),
        value.get("max_batch_wait_ms", 0.0),
        value.get("torch_threads", 1),
    )
    return application(replica)
