#!/usr/bin/env bash
# Several machines, one Ray cluster: replicas of the model on the GPU nodes, one or more GraphQL servers in
# front, every server on the same store (jobs are claimed and handed over through it).
#
#   on the head node:      bash deploy/multi-node.sh head                  (ray start --head)
#   on each GPU node:      HEAD=10.0.0.1 bash deploy/multi-node.sh worker  (ray start --address)
#   on any node, 1 or N:   bash deploy/multi-node.sh server [flags...]     (the GraphQL server, a Ray driver)
#   collating a corpus:    bash deploy/multi-node.sh collate [flags...]    (one worker per GPU; same records)
#
# Environment: HEAD (the head's address), RAY_PORT (6379), MODEL (gpt2-small), REPLICAS (2), PORT (8000),
# DATA_ROOT (shared by every server: az://<account>/<container>/<prefix> with AZURE_STORAGE_CONNECTION_STRING).
# Every node needs this package installed the same way (pip install 'neuron-explainer[ray]') and, offline,
# the model in its HuggingFace cache; HF_HUB_OFFLINE, HF_HOME, NEURON_EXPLAINER_HOME are passed on to replicas.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=.venv/bin/ray
RAY_PORT=${RAY_PORT:-6379}
MODEL=${MODEL:-gpt2-small}
REPLICAS=${REPLICAS:-2}
PORT=${PORT:-8000}
DATA_ROOT=${DATA_ROOT:?set DATA_ROOT to the store every server shares}
role=${1:?usage: bash deploy/multi-node.sh head|worker|server|collate [flags...]}
shift
case "$role" in
  head)  # no GPUs reserved here: replicas go to the workers, the head runs Serve's controller
    exec "$RAY" start --head --port "$RAY_PORT" --num-gpus 0 --dashboard-host 0.0.0.0 --block "$@"
    ;;
  worker)  # the custom resource pins replicas to GPU nodes (--ray_replica_resources below)
    exec "$RAY" start --address "${HEAD:?set HEAD to the head node address}:$RAY_PORT" \
      --resources '{"model_node": 1000}' --block "$@"
    ;;
  server)  # start as many as you like, on any node: they share the replicas (one Serve app) and the store
    exec .venv/bin/neuron-explainer serve --host_name 0.0.0.0 --port "$PORT" --model_name "$MODEL" \
      --data_root "$DATA_ROOT" --inference_backend ray --ray_address auto --ray_replicas "$REPLICAS" \
      --ray_gpus_per_replica 1 --ray_cpus_per_replica 2 --ray_replica_resources '{"model_node": 1}' "$@"
    ;;
  collate)  # e.g. --corpus corpus.jsonl --kinds mlp_neuron,attention_head
    exec .venv/bin/neuron-explainer collate --model_name "$MODEL" --out "$DATA_ROOT" --ray_address auto "$@"
    ;;
  *)
    echo "usage: bash deploy/multi-node.sh head|worker|server|collate [flags...]" >&2
    exit 2
    ;;
esac
