#!/usr/bin/env bash
# `make demo`: builds, then runs modelmanager and
# modelproxy on a config until Ctrl-C, showing the manager's events.
#
#   tools/demo.sh [CONFIG]          # default examples/demo.yaml
#
# Addresses: MODELPLANE_PROXY (default 127.0.0.1:8080) and
# MODELPLANE_MANAGER (default 127.0.0.1:50051); a default address that is
# in use is replaced by a free port (said so), one set explicitly that is
# in use is an error. Logs go to
# MODELPLANE_LOG_DIR (default a fresh temporary directory, printed). With
# MODELPLANE_BIN set (a tree holding server/modelmanager, proxy/modelproxy,
# client/mpctl, tools/fake_upstream/fake_upstream), nothing is built.
# Ctrl-C (or SIGTERM) stops the proxy, then the manager, which stops every
# model it started: nothing is left running. Ctrl-C is how the demo ends,
# so it exits 0 then (make says nothing more).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-examples/demo.yaml}"
proxy_addr="${MODELPLANE_PROXY:-127.0.0.1:8080}"
manager_addr="${MODELPLANE_MANAGER:-127.0.0.1:50051}"

# Whether HOST:PORT can be bound now (nothing else listens there).
port_free() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
host = host.strip("[]")
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((host, int(port)))
except OSError:
    sys.exit(1)
PY
}
# A port on HOST free now.
free_port_on() {
  /usr/bin/python3 -c 'import socket,sys;s=socket.socket();s.bind((sys.argv[1],0));print(s.getsockname()[1])' "$1"
}
# The address to use for one of the two servers: the default moves to a
# free port when taken; one the user chose must be free.
choose_addr() {  # NAME ADDR EXPLICIT
  local name="$1" addr="$2" explicit="$3"
  if port_free "$addr"; then
    echo "$addr"
    return
  fi
  if [[ -n "$explicit" ]]; then
    echo "demo: $addr ($name) is in use by another program; set another address" >&2
    return 1
  fi
  local host="${addr%:*}"
  local moved="$host:$(free_port_on "$host")"
  echo "demo: $addr is in use by another program; the $name listens on $moved instead" >&2
  echo "$moved"
}
proxy_addr=$(choose_addr "proxy (MODELPLANE_PROXY)" "$proxy_addr" "${MODELPLANE_PROXY:-}")
manager_addr=$(choose_addr "manager (MODELPLANE_MANAGER)" "$manager_addr" "${MODELPLANE_MANAGER:-}")
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
trap 'exit 0' INT
trap 'exit 143' TERM

# Waits until `pid` has logged that it listens on `addr` (so it is this
# process that answers there, not another program); exits with its log if
# it stops first or does not get there in 10 s.
wait_listening() {  # NAME PID LOG ADDR
  local name="$1" pid="$2" log="$3" addr="$4"
  for _ in $(seq 100); do
    grep -q "listening on $addr" "$log" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $name exited; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "demo: $name did not listen on $addr within 10 s; its log:" >&2
  cat "$log" >&2
  exit 1
}

"$bin/server/modelmanager" --config "$config" --listen "$manager_addr" \
  2>"$logs/modelmanager.log" &
manager_pid=$!
pids=("$manager_pid")
wait_listening modelmanager "$manager_pid" "$logs/modelmanager.log" "$manager_addr"
"$bin/proxy/modelproxy" --listen "$proxy_addr" --manager "$manager_addr" \
  --access-log 2>"$logs/modelproxy.log" &
proxy_pid=$!
pids=("$proxy_pid" "$manager_pid")  # Stopped in this order.
wait_listening modelproxy "$proxy_pid" "$logs/modelproxy.log" "$proxy_addr"
# The chat example names a model that chats: not an embedder, a reranker or
# a speech model (by its id), when the config has one.
models=$("${mpctl[@]}" ls | awk 'NR>1 {print $1}')
chat_model=$(grep -viE 'embed|rerank|whisper|tts|speech|voice|sd|diffusion' \
  <<<"$models" | head -n 1 || true)
chat_model="${chat_model:-$(head -n 1 <<<"$models")}"

cat <<EOF

modelplane is running on $config
  web UI               http://$proxy_addr/ui/
  proxy (OpenAI API)   http://$proxy_addr/v1
  manager (gRPC)       $manager_addr
  logs                 $logs

Try, in another terminal:
  curl -N http://$proxy_addr/v1/chat/completions \\
    -d '{"model":"$chat_model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
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
