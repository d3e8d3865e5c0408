#!/usr/bin/env bash
# `make demo` and `make run CONFIG=...`: builds, then runs modelmanager and
# modelproxy on a config until Ctrl-C, showing the manager's events.
#
#   tools/demo.sh [CONFIG]          # default examples/demo.yaml
#
# Addresses: MODELPLANE_PROXY (default 127.0.0.1:8080) and
# MODELPLANE_MANAGER (default 127.0.0.1:50051). Logs go to
# MODELPLANE_LOG_DIR (default a fresh temporary directory, printed). With
# MODELPLANE_BIN set (a tree holding server/modelmanager, proxy/modelproxy,
# client/mpctl, tools/fake_upstream/fake_upstream), nothing is built.
# Ctrl-C (or SIGTERM) stops the proxy, then the manager, which stops every
# model it started: nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-examples/demo.yaml}"
proxy_addr="${MODELPLANE_PROXY:-127.0.0.1:8080}"
manager_addr="${MODELPLANE_MANAGER:-127.0.0.1:50051}"
logs="${MODELPLANE_LOG_DIR:-$(mktemp -d /tmp/modelplane-demo.XXXXXX)}"
bazel="${BAZEL:-bazel}"

if [[ ! -f "$config" ]]; then
  echo "demo: no config file $config" >&2
  exit 2
fi
if [[ -z "${MODELPLANE_BIN:-}" ]]; then
  "$bazel" build //server:modelmanager //proxy:modelproxy //client:mpctl \
    //tools/fake_upstream
  MODELPLANE_BIN="$PWD/bazel-bin"
fi
export MODELPLANE_BIN  # examples/demo.yaml finds fake_upstream with it.
bin="$MODELPLANE_BIN"
mpctl=("$bin/client/mpctl" --manager "$manager_addr")
"$bin/server/modelmanager" --config "$config" --check >/dev/null

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  # The proxy first (it drains), then the manager (it stops the models).
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  echo "demo: stopped; logs in $logs"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$bin/server/modelmanager" --config "$config" --listen "$manager_addr" \
  2>"$logs/modelmanager.log" &
manager_pid=$!
for _ in $(seq 100); do
  "${mpctl[@]}" ls >/dev/null 2>&1 && break
  if ! kill -0 "$manager_pid" 2>/dev/null; then
    echo "demo: modelmanager exited; its log:" >&2
    cat "$logs/modelmanager.log" >&2
    exit 1
  fi
  sleep 0.1
done
"$bin/proxy/modelproxy" --listen "$proxy_addr" --manager "$manager_addr" \
  --access-log 2>"$logs/modelproxy.log" &
proxy_pid=$!
pids=("$proxy_pid" "$manager_pid")  # Stopped in this order.
for _ in $(seq 100); do
  curl -sf "http://$proxy_addr/health" >/dev/null 2>&1 && break
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    echo "demo: modelproxy exited; its log:" >&2
    cat "$logs/modelproxy.log" >&2
    exit 1
  fi
  sleep 0.1
done
first_model=$("${mpctl[@]}" ls | awk 'NR==2 {print $1}')

cat <<EOF

modelplane is running on $config
  proxy (OpenAI API)   http://$proxy_addr/v1
  manager (gRPC)       $manager_addr
  logs                 $logs

Try, in another terminal:
  curl -N http://$proxy_addr/v1/chat/completions \\
    -d '{"model":"$first_model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  curl --http2-prior-knowledge http://$proxy_addr/v1/models
  $bin/client/mpctl --manager $manager_addr ls
  $bin/client/mpctl --manager $manager_addr watch
  grpcurl -plaintext $manager_addr list    # grpcurl: not in Debian, see docs/api.md

Events (Ctrl-C stops everything):
EOF
# Foreground: the manager's state changes, one line each, until Ctrl-C.
"${mpctl[@]}" watch &
watch_pid=$!
pids=("$watch_pid" "$proxy_pid" "$manager_pid")
wait "$watch_pid" || true
