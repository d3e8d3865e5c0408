#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a figure this
# shared 2-core machine cannot blur (wall-clock throughput here moves by
# 10-20 % between minutes). Use it to compare two builds of modelproxy on
# the user-space side of the request path, and modelproxy with its peers;
# the kernel's share (about half of a proxy's time) is not counted.
#
#   bazel run -c opt //tools/bench/proxy:instructions -- [old-modelproxy ...]
#
# Each binary given (and the one built) serves small non-streaming
# completions from one fake_upstream model, with one worker under
# valgrind --tool=callgrind; instrumentation is on only while the load runs
# (wrk: 16 connections, 4 s; h2load: 16 connections x 8 streams, 4 s; over
# TLS, h2load --h1: 16 connections, 4 s, the same ECDSA P-256 certificate
# and TLS_AES_128_GCM_SHA256 for both, the 16 handshakes' instructions
# (OpenSSL's SSL_do_handshake) left out, so that the figure is a request's
# on an open connection). nginx (HTTP/1.1 and TLS, `master_process off`)
# and nghttpx (h2c, `--single-process`) are counted the same way in the same
# run. Prints instructions per request for each. Needs valgrind (apt-get
# install valgrind); not part of `make bench`.
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
trap 'kill $manager_pid 2>/dev/null; pkill -f "$fake --port $up" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'$body'" >"$work/post.lua"
echo "$body" >"$work/body.json"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null

load() {  # h1|h2 url seconds -> requests done
  if [[ $1 == h1 ]]; then
    wrk -t1 -c16 -d"$3"s -s "$work/post.lua" "$2" | awk '/requests in/ {print $1}'
  elif [[ $1 == tls ]]; then
    h2load --h1 -t1 -c16 -D "$3" --tls13-ciphers=TLS_AES_128_GCM_SHA256 \
      -d "$work/body.json" -H 'content-type: application/json' "$2" |
      awk '/^requests:/ {print $8}'
  else
    h2load -t1 -c16 -m8 -D "$3" -d "$work/body.json" \
      -H 'content-type: application/json' "$2" | awk '/^requests:/ {print $8}'
  fi
}

# name protocol url pid: warm up, count 4 s of load, stop the process.
count() {
  local curl_flags=()
  [[ $2 == h2 ]] && curl_flags=(--http2-prior-knowledge)
  [[ $2 == tls ]] && curl_flags=(-k)
  for _ in $(seq 200); do
    curl -sf "${curl_flags[@]}" "$3" -d "$body" >/dev/null && break
    sleep 0.1
  done
  load "$2" "$3" 2 >/dev/null
  callgrind_control -i on "$4" >/dev/null 2>&1
  local requests
  requests=$(load "$2" "$3" 4)
  callgrind_control -i off "$4" >/dev/null 2>&1
  kill "$4"
  wait "$4" || true
  local total
  total=$(callgrind_annotate "$work/callgrind.$4" 2>/dev/null |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  if [[ $2 == tls ]]; then
    local handshakes
    handshakes=$(callgrind_annotate --inclusive=yes "$work/callgrind.$4" \
      2>/dev/null | awk '/:SSL_do_handshake / && !n++ {gsub(",", "", $1); print $1}')
    if [[ -z $handshakes ]]; then
      echo "$1 tls: no SSL_do_handshake in the profile: cannot leave the" \
        "handshakes out" >&2
      exit 1
    fi
    total=$((total - handshakes))
  fi
  printf '%-10s %-6s %6d instructions per request (%d requests)\n' \
    "$1" "$2" $((total / requests)) "$requests"
}

grind() { exec valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$work/callgrind.%p" "$@" 2>>"$work/valgrind.log"; }

url="http://127.0.0.1:$px/v1/chat/completions"
for bin in "${binaries[@]}"; do
  echo "$bin:"
  for proto in h1 h2; do
    grind "$bin" --listen "127.0.0.1:$px" --manager "127.0.0.1:$mm" \
      --workers 1 &
    count modelproxy "$proto" "$url" $!
  done
  grind "$bin" --listen "127.0.0.1:$px" --manager "127.0.0.1:$mm" \
    --workers 1 --tls-cert-file "$work/cert.pem" \
    --tls-key-file "$work/key.pem" &
  count modelproxy tls "https://127.0.0.1:$px/v1/chat/completions" $!
done

ng=$(port)
cat >"$work/nginx.conf" <<N
master_process off; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; upstream m { server 127.0.0.1:$up; keepalive 128; }
  server { listen 127.0.0.1:$ng; location / { proxy_pass http://m;
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
N
echo "peers:"
grind nginx -c "$work/nginx.conf" &
count nginx h1 "http://127.0.0.1:$ng/v1/chat/completions" $!
ngs=$(port)
cat >"$work/nginx-tls.conf" <<N
master_process off; daemon off; pid $work/nginx-tls.pid;
error_log $work/nginx-tls.err;
events { worker_connections 4096; }
http { access_log off; upstream m { server 127.0.0.1:$up; keepalive 128; }
  server { listen 127.0.0.1:$ngs ssl; ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem; location / { proxy_pass http://m;
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
N
grind nginx -c "$work/nginx-tls.conf" &
count nginx tls "https://127.0.0.1:$ngs/v1/chat/completions" $!
nx=$(port)
grind nghttpx --conf=/dev/null "--frontend=127.0.0.1,$nx;no-tls" \
  "--backend=127.0.0.1,$up" --single-process --workers=1 \
  --errorlog-file="$work/nghttpx.err" &
count nghttpx h2 "http://127.0.0.1:$nx/v1/chat/completions" $!
