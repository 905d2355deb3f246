#!/usr/bin/env bash
# One entry point for people and CI:
#   bash scripts/dev.sh serve [flags]  set up, then serve the embedded default (tiny-gpt2 + a local store);
#                                      flags pass through to the server and win (e.g. --port 9000)
#   bash scripts/dev.sh test [args]    set up, then run every check and test (args go to pytest)
#   bash scripts/dev.sh setup          only set up (.venv/, node_modules/, generated client, built assets)
# Each set-up step prints one line with its time; a step that is already up to date is skipped (stamps
# hold the hash of its inputs). Tool output goes to var/log/setup/<step>.log and is shown only on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
LOGS="$ROOT/var/log/setup"
STATIC="neuron_explainer/activation_server/static"
mkdir -p "$LOGS"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }  # stamp_ok FILE HASH

# step NAME FUNCTION: runs FUNCTION with its output in $LOGS/NAME.log; prints one line with the time, or
# on failure the log's tail and where the whole log is. Returns FUNCTION's status.
step() {
  local name=$1 fn=$2 started status=0
  started=$(now)
  "$fn" >"$LOGS/$name.log" 2>&1 || status=$?
  if [ "$status" = 0 ]; then
    printf '==> %-58s %6s s\n' "$(describe "$name")" "$(since "$started")" >&2
  else
    printf '==> %s FAILED after %s s (exit %s); the last lines of %s:\n' \
      "$(describe "$name")" "$(since "$started")" "$status" "var/log/setup/$name.log" >&2
    tail -n 40 "$LOGS/$name.log" | sed 's/^/    /' >&2
  fi
  return "$status"
}

describe() {
  case "$1" in
    python) echo "python: .venv ($EXTRAS_LABEL, torch 2.13.0 CPU pinned)" ;;
    node) echo "node: npm ci" ;;
    assets) echo "client: codegen + GraphiQL and viewer bundles" ;;
    chromium) echo "chromium (Debian package, for the browser tests)" ;;
    *) echo "$1" ;;
  esac
}

# ---- python ---------------------------------------------------------------------------------------
EXTRAS="embeddings"  # serve: the package and explanation search; test and setup add the dev tools and Ray
EXTRAS_LABEL="runtime + embeddings"
# The stamp holds the hash of pyproject.toml and requirements.lock and the extras installed; a venv
# with more extras also serves.
python_current() {
  local hash extras want
  [ -x .venv/bin/python ] && [ -f .venv/.setup-stamp ] || return 1
  read -r hash extras <.venv/.setup-stamp || true
  [ "$hash" = "$(python_wanted)" ] || return 1
  for want in ${EXTRAS//,/ }; do
    case ",$extras," in *",$want,"*) ;; *) return 1 ;; esac
  done
}
stamp_python() { echo "$(python_wanted) $EXTRAS" >.venv/.setup-stamp; }
# The recipe's version is part of the hash, so a venv set up by an older recipe is set up again.
python_wanted() { { cat pyproject.toml requirements.lock; echo "recipe 2: bytecode compiled"; } | sha256sum | cut -c1-16; }
# (Step functions chain with && : `set -e` does not apply inside a function called from a condition.)
install_python() {
  { [ -x .venv/bin/python ] || python3 -m venv .venv; } &&
    if install_with_uv; then :; else
      echo "uv could not install the environment; installing with pip instead"
      # torch first and pinned: unpinned, it pulls a multi-GB CUDA build.
      .venv/bin/pip install "torch==2.13.0" && .venv/bin/pip install -c requirements.lock -e ".${EXTRAS:+[$EXTRAS]}"
    fi &&
    stamp_python
}

# shellcheck disable=SC1091
source scripts/pip_sources.sh

# uv (pinned, installed into the venv by pip) resolves and installs in parallel: ~5x faster than pip here.
# It does not read pip's configuration, so the machine's pip indexes and wheel folders are passed on.
# --compile-bytecode: where $PYTHONDONTWRITEBYTECODE is set (as on these machines) Python never caches
# what it compiles, so without it every process (each test server, each Ray worker) compiles torch and
# transformers from source again: a tiny-gpt2 server starts in 8 s instead of 17.
install_with_uv() {
  .venv/bin/pip install --no-compile "uv==0.13.9" &&
    # shellcheck disable=SC2046
    .venv/bin/uv pip install --native-tls --python .venv/bin/python --index-strategy unsafe-best-match $(pip_sources) \
      --compile-bytecode -c requirements.lock "torch==2.13.0" -e ".${EXTRAS:+[$EXTRAS]}"
}

# ---- node and the client assets -------------------------------------------------------------------
node_wanted() { hash_of package.json package-lock.json; }
install_node() {
  npm ci --no-audit --no-fund --loglevel=error --progress=false && node_wanted >node_modules/.setup-stamp
}
# Everything the bundles are built from; the generated client is an output, not an input.
assets_wanted() {
  { find client -type f -not -path 'client/src/generated/*' -not -path 'client/tests/*' -print0 |
      sort -z | xargs -0 cat
    cat package-lock.json codegen.yml schema/schema.graphql; } | sha256sum | cut -c1-16
}
build_assets() {
  npm run -s build && assets_wanted >"$STATIC/.build-stamp"  # codegen, then the bundles
}

install_chromium() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
}

setup() {
  local python_status=0 pid=""
  if ! python_current; then
    step python install_python &
    pid=$!
  fi
  # npm and pip side by side: one waits on the network and disk while the other unpacks.
  if ! { [ -d node_modules ] && stamp_ok node_modules/.setup-stamp "$(node_wanted)"; }; then
    step node install_node || { [ -z "$pid" ] || wait "$pid" || true; exit 1; }
  fi
  if ! stamp_ok "$STATIC/.build-stamp" "$(assets_wanted)"; then
    step assets build_assets || { [ -z "$pid" ] || wait "$pid" || true; exit 1; }
  fi
  if [ -n "$pid" ]; then wait "$pid" || python_status=$?; fi
  [ "$python_status" = 0 ] || exit 1
}

# The port the server will take, from the flags as the server reads them (the last one wins).
serve_address() {
  local host=127.0.0.1 port=8000
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port=${2:-}; shift ;;
      --port=*) port=${1#--port=} ;;
      --host_name) host=${2:-}; shift ;;
      --host_name=*) host=${1#--host_name=} ;;
    esac
    shift
  done
  echo "$host $port"
}

# Fails in a fraction of a second, before any set-up, when something already listens on the port.
check_port() {
  python3 - "$1" "$2" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_server((host, port)):
        pass
except OSError as exc:
    print(f"==> port {port} on {host} is taken ({exc.strerror}): stop what listens there "
          f"(`ss -ltnp 'sport = :{port}'` shows it) or pass --port N", file=sys.stderr)
    sys.exit(1)
EOF
}

case "${1:-}" in
  setup)
    EXTRAS=dev,embeddings,ray
    EXTRAS_LABEL="runtime + embeddings + ray + dev tools"
    setup
    ;;
  serve)
    shift
    # shellcheck disable=SC2046
    check_port $(serve_address "$@")
    setup
    # The server prints where it listens once the port is bound, and a line when it is ready.
    exec .venv/bin/python neuron_explainer/activation_server/main.py \
      --host_name 127.0.0.1 --port 8000 \
      --model_name tiny-gpt2 --mlp_autoencoder_name ae-tiny-mlp --attn_autoencoder_name ae-tiny-attn \
      --neuron_method top-tokens --attention_head_method top-tokens \
      --data_root "$ROOT/var/store" --build_demo_dataset True "$@"
    ;;
  test)
    shift
    EXTRAS=dev,embeddings,ray
    EXTRAS_LABEL="runtime + embeddings + ray + dev tools"
    setup
    if ! command -v chromium >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step chromium install_chromium
      else
        echo "==> chromium not found and cannot be installed here: browser tests will be skipped" >&2
      fi
    fi
    echo "==> static checks: ruff, ruff format, import contracts, mypy, tsc" >&2
    .venv/bin/ruff check -q .
    .venv/bin/ruff format --check -q .
    .venv/bin/lint-imports --no-cache >"$LOGS/lint-imports.log" 2>&1 || { cat "$LOGS/lint-imports.log" >&2; exit 1; }
    .venv/bin/mypy
    npm run -s typecheck
    echo "==> pytest" >&2
    # Two workers, each taking whole modules (tests/conftest.py groups the Ray and embedded-default ones):
    # the suite waits on servers and subprocesses as much as it computes, so two keep both cores busy.
    exec .venv/bin/pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadscope --no-loadscope-reorder "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh serve|test|setup [flags]" >&2
    exit 2
    ;;
esac
