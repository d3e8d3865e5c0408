#!/usr/bin/env bash
# Proxy throughput and latency, measured in one run against the same
# fake_upstream: direct, through modelproxy, through nginx (upstream
# keep-alive, proxy_buffering off) and through nghttpx, with the same number
# of workers. Small non-streaming completions driven by wrk; then SSE
# per-chunk latency (direct, modelproxy, nginx) and memory per open SSE
# stream (modelproxy, nginx) with sse_bench.py; and the same completions over
# HTTP/2 cleartext with h2load (modelproxy, nginx, nghttpx). Ratios are printed.
#
#   bazel run -c opt //tools/bench/proxy -- [--duration 10] [--workers 2]
#       [--mem-streams 10000]
set -euo pipefail
duration=10
workers=2
connections=64
mem_streams=10000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --mem-streams) mem_streams="$2"; shift 2 ;;
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
nx_port=$(free_port); sse_port=$(free_port); slow_port=$(free_port)
ng_sse_port=$(free_port); ng_slow_port=$(free_port); ng_h2_port=$(free_port)
# Every stream through a proxy holds two descriptors in it.
ulimit -n "$(ulimit -Hn)"
fd_cap=$(( ($(ulimit -n) - 500) / 2 ))
if (( mem_streams > fd_cap )); then
  echo "note: open-file limit $(ulimit -n): memory measured at $fd_cap streams, not $mem_streams" >&2
  mem_streams=$fd_cap
fi

cat > "$work/config.yaml" <<YAML
models:
  bench:
    cmd: $fake --port $up_port --tokens 16
    proxy: http://127.0.0.1:$up_port
    checkEndpoint: /health
    concurrencyLimit: 100000
  sse:
    cmd: $fake --port $sse_port --tokens 40 --tokens-per-second 20 --stamp-chunks
    proxy: http://127.0.0.1:$sse_port
    concurrencyLimit: 100000
  slow:
    cmd: $fake --port $slow_port --tokens-per-second 0.1
    proxy: http://127.0.0.1:$slow_port
    concurrencyLimit: 100000
groups:
  all: {swap: false, exclusive: false, members: [bench, sse, slow]}
YAML
"$manager" --config "$work/config.yaml" --listen "127.0.0.1:$mm_port" --log-level warn 2>"$work/mm.log" &
pids+=($!)
"$proxy" --listen "127.0.0.1:$px_port" --manager "127.0.0.1:$mm_port" --workers "$workers" 2>"$work/px.log" &
px_pid=$!
pids+=($px_pid)
cat > "$work/nginx.conf" <<NGINX
worker_processes $workers;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
  access_log off;
  keepalive_requests 1000000;  # Else a GOAWAY / close every 1,000 requests.
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  upstream fake { server 127.0.0.1:$up_port; keepalive 128; }
  upstream sse { server 127.0.0.1:$sse_port; keepalive 128; }
  upstream slow { server 127.0.0.1:$slow_port; keepalive 128; }
  server {
    listen 127.0.0.1:$ng_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$ng_h2_port http2;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$ng_sse_port;
    location / { proxy_pass http://sse; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$ng_slow_port;
    location / { proxy_pass http://slow; proxy_buffering off; }
  }
}
NGINX
nginx -c "$work/nginx.conf"
nghttpx --conf=/dev/null "--frontend=127.0.0.1,$nx_port;no-tls" \
  "--backend=127.0.0.1,$up_port" --workers="$workers" \
  --errorlog-file="$work/nghttpx.err" --pid-file="$work/nghttpx.pid" &
pids+=($!)

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
read -r x_rps x_p50 x_p99 <<<"$(run nghttpx "http://127.0.0.1:$nx_port/v1/chat/completions")"
echo "proxy: small non-streaming completions, wrk -c$connections ${duration}s, $workers worker(s) each"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' direct "$d_rps" "$d_p50" "$d_p99"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' modelproxy "$p_rps" "$p_p50" "$p_p99"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' nginx "$n_rps" "$n_p50" "$n_p99"
printf '%-12s %10s req/s  p50 %8s us  p99 %8s us\n' nghttpx "$x_rps" "$x_p50" "$x_p99"
/usr/bin/python3 -c "
p,n,d,x=$p_rps,$n_rps,$d_rps,$x_rps
print('modelproxy / nginx throughput: %.2fx (target >= 1.2x: %s); modelproxy / nghttpx: %.2fx' % (p/n, 'met' if p/n>=1.2 else 'MISSED', p/x))
print('added p50 latency vs direct: modelproxy %.0f us (target <= 50: %s), nginx %.0f us, nghttpx %.0f us' % ($p_p50-$d_p50, 'met' if $p_p50-$d_p50 <= 50 else 'MISSED', $n_p50-$d_p50, $x_p50-$d_p50))"

# HTTP/2 cleartext (prior knowledge): the same completions, h2load with
# 16 connections x 8 concurrent streams; HTTP/1.1 to the upstream.
echo "$body" > "$work/body.json"
h2run() {  # url -> "rps mean_us"
  local out
  out=$(h2load -t2 -c16 -m8 -D "$duration" -d "$work/body.json" \
    -H 'content-type: application/json' "$1" 2>&1)
  if ! echo "$out" | grep -q " 0 failed, 0 errored"; then
    echo "h2load $1: $(echo "$out" | grep 'requests:')" >&2
  fi
  local rps mean
  rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
  echo "$rps $(to_us "$mean")"
}
read -r hp_rps hp_mean <<<"$(h2run "http://127.0.0.1:$px_port/v1/chat/completions")"
read -r hn_rps hn_mean <<<"$(h2run "http://127.0.0.1:$ng_h2_port/v1/chat/completions")"
read -r hx_rps hx_mean <<<"$(h2run "http://127.0.0.1:$nx_port/v1/chat/completions")"
echo "h2c: small non-streaming completions, h2load -c16 -m8 ${duration}s"
printf '%-12s %10s req/s  mean %8s us\n' modelproxy "$hp_rps" "$hp_mean"
printf '%-12s %10s req/s  mean %8s us\n' nginx "$hn_rps" "$hn_mean"
printf '%-12s %10s req/s  mean %8s us\n' nghttpx "$hx_rps" "$hx_mean"
/usr/bin/python3 -c "
print('h2c throughput: modelproxy / nginx %.2fx, modelproxy / nghttpx %.2fx' % ($hp_rps/$hn_rps, $hp_rps/$hx_rps))"

# SSE: per-chunk latency, 50 streams of 40 chunks at 20 chunks/s each.
sse="/usr/bin/python3 $here/tools/bench/proxy/sse_bench.py"
curl -sf "http://127.0.0.1:$px_port/v1/chat/completions" \
  -d '{"model":"sse","messages":[],"max_tokens":1}' >/dev/null
curl -sf "http://127.0.0.1:$px_port/v1/chat/completions" \
  -d '{"model":"slow","messages":[],"max_tokens":1}' >/dev/null
read -r sd_p50 sd_p99 _ <<<"$($sse latency "http://127.0.0.1:$sse_port/v1/chat/completions")"
read -r sp_p50 sp_p99 _ <<<"$($sse latency "http://127.0.0.1:$px_port/v1/chat/completions")"
read -r sn_p50 sn_p99 _ <<<"$($sse latency "http://127.0.0.1:$ng_sse_port/v1/chat/completions")"
echo "sse: per-chunk latency, upstream write to client read, 50 streams x 40 chunks"
printf '%-12s p50 %8s us  p99 %8s us\n' direct "$sd_p50" "$sd_p99"
printf '%-12s p50 %8s us  p99 %8s us\n' modelproxy "$sp_p50" "$sp_p99"
printf '%-12s p50 %8s us  p99 %8s us\n' nginx "$sn_p50" "$sn_p99"
/usr/bin/python3 -c "
print('added per-chunk p50: modelproxy %.0f us (target <= 30: %s), nginx %.0f us' % ($sp_p50-$sd_p50, 'met' if $sp_p50-$sd_p50 <= 30 else 'MISSED', $sn_p50-$sd_p50))"

# Memory per open SSE stream: the proxy's RSS growth with N streams held.
ng_pids=$(pgrep -P "$(cat "$work/nginx.pid")" | paste -sd, -)
read -r mp_kib mp_n <<<"$($sse memory "http://127.0.0.1:$px_port/v1/chat/completions" \
  --model slow --streams "$mem_streams" --pids "$px_pid")"
read -r mn_kib mn_n <<<"$($sse memory "http://127.0.0.1:$ng_slow_port/v1/chat/completions" \
  --model slow --streams "$mem_streams" --pids "$ng_pids")"
echo "sse: memory per open stream (RSS growth / streams)"
printf '%-12s %8s KiB/stream at %s streams\n' modelproxy "$mp_kib" "$mp_n"
printf '%-12s %8s KiB/stream at %s streams (workers summed)\n' nginx "$mn_kib" "$mn_n"
/usr/bin/python3 -c "
print('modelproxy memory per stream: %.1f KiB (target <= 32: %s), %.2fx nginx' % ($mp_kib, 'met' if $mp_kib <= 32 else 'MISSED', $mp_kib/max($mn_kib,0.1)))"
