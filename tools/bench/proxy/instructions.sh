#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a figure this
# shared 2-core machine cannot blur (wall-clock throughput here moves by
# 10-20 % between minutes). Use it to compare two builds of modelproxy on
# the user-space side of the request path; the kernel's share (about three
# quarters of the proxy's time) is not counted.
#
#   bazel run -c opt //tools/bench/proxy:instructions -- [old-modelproxy ...]
#
# Each binary given (and the one built) serves small non-streaming
# completions from one fake_upstream model, with one worker under
# valgrind --tool=callgrind; instrumentation is on only while wrk runs
# (16 connections, 4 s). Prints instructions per request for each.
# Needs valgrind (apt-get install valgrind); not part of `make bench`.
set -euo pipefail
command -v valgrind >/dev/null || {
  echo "instructions.sh needs valgrind (apt-get install valgrind)" >&2
  exit 2
}
here="$PWD"
fake="$here/tools/fake_upstream/fake_upstream"
manager="$here/server/modelmanager"
binaries=("$here/proxy/modelproxy" "$@")
work="$(mktemp -d)"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port)
mm=$(port)
px=$(port)
cat >"$work/config.yaml" <<Y
models:
  bench:
    cmd: $fake --port $up --tokens 16
    proxy: http://127.0.0.1:$up
    checkEndpoint: /health
    concurrencyLimit: 100000
Y
"$manager" --config "$work/config.yaml" --listen "127.0.0.1:$mm" \
  --log-level warn 2>"$work/manager.log" &
manager_pid=$!
trap 'kill $manager_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'$body'" >"$work/post.lua"
url="http://127.0.0.1:$px/v1/chat/completions"
for bin in "${binaries[@]}"; do
  valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/callgrind.%p" \
    "$bin" --listen "127.0.0.1:$px" --manager "127.0.0.1:$mm" --workers 1 \
    2>"$work/proxy.log" &
  proxy_pid=$!
  for _ in $(seq 200); do
    curl -sf "$url" -d "$body" >/dev/null && break
    sleep 0.1
  done
  wrk -t1 -c16 -d2s -s "$work/post.lua" "$url" >/dev/null  # Warm up.
  callgrind_control -i on "$proxy_pid" >/dev/null
  out=$(wrk -t1 -c16 -d4s -s "$work/post.lua" "$url")
  callgrind_control -i off "$proxy_pid" >/dev/null
  kill "$proxy_pid"
  wait "$proxy_pid" || true
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  total=$(callgrind_annotate "$work/callgrind.$proxy_pid" 2>/dev/null |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$bin: $((total / requests)) instructions per request ($requests requests)"
done
