#!/usr/bin/env bash
# Proxy throughput and latency, measured in one run against the same
# fake_upstream: direct, through modelproxy, and through nginx (upstream
# keep-alive, proxy_buffering off) with the same number of workers.
# Small non-streaming completions driven by wrk; ratios are printed.
#
#   bazel run -c opt //tools/bench/proxy -- [--duration 10] [--workers 2]
set -euo pipefail
duration=10
workers=2
connections=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
here="$PWD"
fake="$here/tools/fake_upstream/fake_upstream"
manager="$here/server/modelmanager"
proxy="$here/proxy/modelproxy"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
up_port=$(free_port); mm_port=$(free_port); px_port=$(free_port); ng_port=$(free_port)

cat > "$work/config.yaml" <<YAML
models:
  bench:
    cmd: $fake --port $up_port --tokens 16
    proxy: http://127.0.0.1:$up_port
    checkEndpoint: /health
    concurrencyLimit: 100000
YAML
"$manager" --config "$work/config.yaml" --listen "127.0.0.1:$mm_port" --log-level warn 2>"$work/mm.log" &
pids+=($!)
"$proxy" --listen "127.0.0.1:$px_port" --manager "127.0.0.1:$mm_port" --workers "$workers" 2>"$work/px.log" &
pids+=($!)
cat > "$work/nginx.conf" <<NGINX
worker_processes $workers;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  upstream fake { server 127.0.0.1:$up_port; keepalive 128; }
  server {
    listen 127.0.0.1:$ng_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf"

body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
# Warm up: the first request starts the model through the proxy.
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$px_port/v1/chat/completions" -d "$body" >/dev/null && break
  sleep 0.1
done

run() {  # name url -> "rps p50_us p99_us"
  local out
  out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$2" 2>&1)
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$1: $(echo "$out" | grep Non-2xx)" >&2
  fi
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_us "$p50") $(to_us "$p99")"
}
to_us() {  # wrk prints 123.45us, 1.23ms, 1.00s
  /usr/bin/python3 -c "
v='$1'
for suf,mul in (('us',1),('ms',1e3),('s',1e6)):
    if v.endswith(suf): print(round(float(v[:-len(suf)])*mul,1)); break
else: print('nan')"
}
read -r d_rps d_p50 d_p99 <<<"$(run direct "http://127.0.0.1:$up_port/v1/chat/completions")"
read -r p_rps p_p50 p_p99 <<<"$(run modelproxy "http://127.0.0.1:$px_port/v1/chat/completions")"
read -r n_rps n_p50 n_p99 <<<"$(run nginx "http://127.0.0.1:$ng_port/v1/chat/completions")"
echo "proxy: small non-streaming completions, wrk -c$connections ${duration}s, $workers worker(s) each"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' direct "$d_rps" "$d_p50" "$d_p99"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' modelproxy "$p_rps" "$p_p50" "$p_p99"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' nginx "$n_rps" "$n_p50" "$n_p99"
/usr/bin/python3 -c "
p,n,d=$p_rps,$n_rps,$d_rps
print('modelproxy / nginx throughput: %.2fx (target >= 1.2x: %s)' % (p/n, 'met' if p/n>=1.2 else 'MISSED'))
print('added p50 latency vs direct: modelproxy %.0f us, nginx %.0f us' % ($p_p50-$d_p50, $n_p50-$d_p50))"
