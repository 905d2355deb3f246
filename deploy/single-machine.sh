#!/usr/bin/env bash
# One machine, one server: the model in the server process (default), or N Ray Serve replicas of it on this
# machine's GPUs (--inference_backend ray with no --ray_address starts a local Ray cluster in the server).
#
#   bash deploy/single-machine.sh local [flags...]   one process owns the model (the simplest; the default)
#   bash deploy/single-machine.sh ray   [flags...]   one replica per GPU, behind the same GraphQL server
#
# Environment: MODEL (gpt2-small), DATA_ROOT (a folder or az://...), PORT (8000), REPLICAS (GPUs, or 2 on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-gpt2-small}
DATA_ROOT=${DATA_ROOT:-$PWD/var/store}
PORT=${PORT:-8000}
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
REPLICAS=${REPLICAS:-$([ "${gpus:-0}" -gt 0 ] && echo "$gpus" || echo 2)}
mode=${1:-local}
shift || true
common=(--host_name 0.0.0.0 --port "$PORT" --model_name "$MODEL" --data_root "$DATA_ROOT")
case "$mode" in
  local)
    exec .venv/bin/neuron-explainer serve "${common[@]}" "$@"
    ;;
  ray)
    per_gpu=$([ "${gpus:-0}" -gt 0 ] && echo 1 || echo 0)
    exec .venv/bin/neuron-explainer serve "${common[@]}" --inference_backend ray \
      --ray_replicas "$REPLICAS" --ray_gpus_per_replica "$per_gpu" --ray_cpus_per_replica 1 "$@"
    ;;
  *)
    echo "usage: bash deploy/single-machine.sh local|ray [server flags...]" >&2
    exit 2
    ;;
esac
