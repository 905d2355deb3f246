#!/usr/bin/env bash
# One entry point for people and CI:
#   bash scripts/dev.sh serve   set everything up, then serve the embedded default (tiny-gpt2 + a local store)
#   bash scripts/dev.sh test    set everything up, then run every check and test
#   bash scripts/dev.sh setup   only set up (.venv/, node_modules/, generated client, built assets)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

stamp_ok() {  # stamp_ok FILE HASH: true when FILE holds HASH
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

setup_python() {
  local want
  want=$(cat pyproject.toml | sha256sum | cut -c1-16)
  if [ -x .venv/bin/python ] && stamp_ok .venv/.setup-stamp "$want"; then return; fi
  say "python: .venv (torch 2.13.0 CPU wheel, pinned)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > .venv/.setup-stamp
}

setup_node() {
  local want
  want=$(cat package.json package-lock.json | sha256sum | cut -c1-16)
  if [ -d node_modules ] && stamp_ok node_modules/.setup-stamp "$want"; then return; fi
  say "node: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.setup-stamp
}

setup_chromium() {
  if command -v chromium >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "chromium (Debian package, for the browser tests)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium not found and cannot be installed here: browser tests will be skipped"
  fi
}

build_client() {
  say "client: codegen + bundle (GraphiQL and the viewer, served from local assets)"
  npm run -s build  # runs codegen first, then bundles
}

setup() {
  setup_python
  setup_node
  build_client
}

case "${1:-}" in
  setup)
    setup
    ;;
  serve)
    setup
    shift
    say "serving the embedded default on http://127.0.0.1:8000 (GraphiQL at /graphql, viewer at /)"
    exec .venv/bin/python neuron_explainer/activation_server/main.py \
      --host_name 127.0.0.1 --port 8000 \
      --model_name tiny-gpt2 --mlp_autoencoder_name ae-tiny-mlp --attn_autoencoder_name ae-tiny-attn \
      --neuron_method top-tokens --attention_head_method top-tokens \
      --data_root "$ROOT/var/store" --build_demo_dataset True "$@"
    ;;
  test)
    setup
    setup_chromium
    shift
    say "static checks: ruff, mypy, tsc"
    .venv/bin/ruff check .
    .venv/bin/mypy
    npm run -s typecheck
    say "pytest"
    exec .venv/bin/pytest -q -p no:cacheprovider "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh serve|test|setup" >&2
    exit 2
    ;;
esac
