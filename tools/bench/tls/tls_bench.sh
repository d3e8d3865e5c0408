#!/usr/bin/env bash
# TLS on the listener, modelproxy against nginx in one run, with the same
# certificate (ECDSA P-256) and the same cipher (TLS 1.3,
# TLS_AES_128_GCM_SHA256, the only one the clients offer), the same number
# of workers and the same fake_upstream behind both:
#
# - requests per second over TLS, HTTP/1.1 and HTTP/2 (h2load, 64
#   keep-alive connections, small non-streaming completions);
# - the handshake rate: full handshakes a second, each on a new connection
#   (`openssl s_time -new`, two clients at once);
# - for reference, HTTP/1.1 without TLS with the same client (a second
#   modelproxy and a cleartext nginx server): what TLS itself changes.
#
# The runs go in interleaved rounds (modelproxy, nginx, then again): this
# shared 2-core machine drifts over a minute, so each ratio is taken within
# a round and the median over rounds printed, as `tls ... modelproxy/nginx
# 1.02x` lines.
#
#   bazel run -c opt //tools/bench/tls -- [--duration 5] [--rounds 3]
set -euo pipefail
duration=5
rounds=3
workers=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
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
  wait 2>/dev/null || true
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
up_port=$(free_port); mm_port=$(free_port); px_port=$(free_port); ng_port=$(free_port)
pxc_port=$(free_port); ngc_port=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null
cat > "$work/config.yaml" <<YAML
models:
  bench:
    cmd: $fake --port $up_port --tokens 16
    proxy: http://127.0.0.1:$up_port
    concurrencyLimit: 100000
YAML
"$manager" --config "$work/config.yaml" --listen "127.0.0.1:$mm_port" --log-level warn 2>"$work/mm.log" &
pids+=($!)
"$proxy" --listen "127.0.0.1:$px_port" --manager "127.0.0.1:$mm_port" --workers "$workers" \
  --tls-cert-file "$work/cert.pem" --tls-key-file "$work/key.pem" 2>"$work/px.log" &
pids+=($!)
# The same without TLS, for what TLS itself costs each (same client).
"$proxy" --listen "127.0.0.1:$pxc_port" --manager "127.0.0.1:$mm_port" --workers "$workers" \
  2>"$work/pxc.log" &
pids+=($!)
cat > "$work/nginx.conf" <<NGINX
worker_processes $workers;
pid $work/nginx.pid;
daemon off;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  upstream fake { server 127.0.0.1:$up_port; keepalive 128; }
  server {
    listen 127.0.0.1:$ngc_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$ng_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" &
pids+=($!)

body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
printf '%s' "$body" > "$work/body.json"
for _ in $(seq 100); do
  curl -skf "https://127.0.0.1:$px_port/v1/chat/completions" -d "$body" >/dev/null &&
    curl -skf "https://127.0.0.1:$ng_port/v1/chat/completions" -d "$body" >/dev/null && break
  sleep 0.1
done

rps() {  # port h1|h2|clear -> requests/s
  local proto=() scheme=https
  [[ "$2" == h1 ]] && proto=(--h1)
  [[ "$2" == clear ]] && proto=(--h1) && scheme=http
  h2load "${proto[@]}" -c 64 -t 2 -D "$duration" --warm-up-time=1 \
    --tls13-ciphers=TLS_AES_128_GCM_SHA256 \
    -H 'content-type: application/json' -d "$work/body.json" \
    "$scheme://127.0.0.1:$1/v1/chat/completions" 2>&1 |
    awk '/^finished in/ {gsub(",", "", $4); print $4}
         /^requests:/ {if ($10 + 0 > 0) print "port '"$1"': " $0 > "/dev/stderr"}
         /^status codes:/ {if ($5 + $7 + $9 > 0) print "port '"$1"': " $0 > "/dev/stderr"}'
}
handshakes() {  # port -> full handshakes/s (two clients at once)
  local a b
  a=$(mktemp -p "$work"); b=$(mktemp -p "$work")
  for f in "$a" "$b"; do
    openssl s_time -connect "127.0.0.1:$1" -new -time "$duration" \
      -ciphersuites TLS_AES_128_GCM_SHA256 >"$f" 2>/dev/null &
  done
  wait %?s_time 2>/dev/null || wait
  cat "$a" "$b" | awk '/connections in [0-9.]+s;/ {n += $1; t = $4 + 0}
                       END {if (t > 0) printf "%.1f\n", n / t; else print 0}'
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

if [[ -n "${PERF:-}" ]]; then
  # Where modelproxy's time goes under HTTP/1.1 over TLS (not in make bench).
  px_pid=$(pgrep -f "modelproxy --listen 127.0.0.1:$px_port")
  perf record -g -o "$PERF" -p "$px_pid" -- sleep 4 >/dev/null 2>&1 &
  h2load --h1 -c 64 -t 2 -D 4 --tls13-ciphers=TLS_AES_128_GCM_SHA256 \
    -H 'content-type: application/json' -d "$work/body.json" \
    "https://127.0.0.1:$px_port/v1/chat/completions" >/dev/null
  wait %?perf || true
  exit 0
fi
declare -A ratios
for name in h1 h2 hs clear; do ratios[$name]=""; done
for r in $(seq "$rounds"); do
  for kind in h1 h2; do
    p=$(rps "$px_port" "$kind"); n=$(rps "$ng_port" "$kind")
    echo "round $r: TLS $kind requests/s modelproxy $p nginx $n"
    ratios[$kind]+="$(awk -v a="$p" -v b="$n" 'BEGIN {printf "%.3f", a / b}')"$'\n'
  done
  p=$(rps "$pxc_port" clear); n=$(rps "$ngc_port" clear)
  echo "round $r: cleartext h1 requests/s modelproxy $p nginx $n"
  ratios[clear]+="$(awk -v a="$p" -v b="$n" 'BEGIN {printf "%.3f", a / b}')"$'\n'
  p=$(handshakes "$px_port"); n=$(handshakes "$ng_port")
  echo "round $r: TLS handshakes/s modelproxy $p nginx $n"
  ratios[hs]+="$(awk -v a="$p" -v b="$n" 'BEGIN {printf "%.3f", a / b}')"$'\n'
done
echo
echo "tls h1 requests/s modelproxy/nginx $(printf '%s' "${ratios[h1]}" | median)x"
echo "tls h2 requests/s modelproxy/nginx $(printf '%s' "${ratios[h2]}" | median)x"
echo "tls handshakes/s modelproxy/nginx $(printf '%s' "${ratios[hs]}" | median)x"
echo "cleartext h1 requests/s modelproxy/nginx (same client) $(printf '%s' "${ratios[clear]}" | median)x"
