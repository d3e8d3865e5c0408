#!/usr/bin/env bash
# Proxy throughput and latency, measured in one run against the same
# fake_upstream: direct, through modelproxy, through nginx (upstream
# keep-alive, proxy_buffering off) and through nghttpx, with the same number
# of workers. Small non-streaming completions driven by wrk; then SSE
# per-chunk latency (direct, modelproxy, nginx, and a relay that only copies
# bytes, for the cost of the hop itself) with sse_client, and memory per
# open SSE stream (modelproxy, nginx) with sse_bench.py; and the same
# completions over HTTP/2 cleartext with h2load (modelproxy, nginx, nghttpx).
# Ratios are printed.
#
# The wrk runs go in interleaved rounds (direct, modelproxy, nginx, nghttpx,
# then again): this shared 2-core machine drifts by 10-20 % over a minute,
# so each ratio is taken within a round and the median over rounds printed.
# Throughput is measured at 64 connections; the latency a proxy adds is
# measured with one connection (at 64 the p50 is just 64 / throughput,
# Little's law, so it is the throughput ratio again, not added latency).
# Around each 64-connection run the CPU time of the proxy, the model and wrk
# is read and printed per request: on two busy cores that is what sets the
# throughput, and it shows how much of it a proxy's own code can change.
#
#   bazel run -c opt //tools/bench/proxy -- [--duration 5] [--rounds 5]
#       [--workers 2] [--mem-streams 10000] [--only sse]
#
# --only sse: the SSE per-chunk latency alone (for work on the streaming
# path).
set -euo pipefail
duration=5
rounds=5
workers=2
connections=64
mem_streams=10000
only=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --mem-streams) mem_streams="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
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
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
up_port=$(free_port); mm_port=$(free_port); px_port=$(free_port); ng_port=$(free_port)
nx_port=$(free_port); sse_port=$(free_port); slow_port=$(free_port)
ng_sse_port=$(free_port); ng_slow_port=$(free_port); ng_h2_port=$(free_port)
relay_port=$(free_port)
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
# In the foreground, like every other process here: a daemon gets a session
# (and so a scheduler autogroup) of its own, which on this machine cost it
# ~13 % of its throughput against the same nginx in the benchmark's session.
daemon off;
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
nginx -c "$work/nginx.conf" &
ng_pid=$!
pids+=($ng_pid)
nghttpx --conf=/dev/null "--frontend=127.0.0.1,$nx_port;no-tls" \
  "--backend=127.0.0.1,$up_port" --workers="$workers" \
  --errorlog-file="$work/nghttpx.err" --pid-file="$work/nghttpx.pid" &
nx_pid=$!
pids+=($nx_pid)

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

# CPU time (user and system clock ticks) of processes and their children
# (nginx's and nghttpx's workers are children of the process started here).
cpu_ticks() {  # pid... -> "user sys"
  local p all=() u=0 s=0 a b
  for p in "$@"; do all+=("$p" $(pgrep -P "$p" || true)); done
  for p in "${all[@]}"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}
fake_pid=$(pgrep -f "fake_upstream --port $up_port ")
tick=$(getconf CLK_TCK)
run() {  # name url connections [proxy pid] ->
  #   "rps p50_us p99_us" then CPU per request in us: "proxy_user proxy_sys
  #   model wrk" (proxy 0 0 for direct)
  local out threads=2 pu=0 ps=0 pu2=0 ps2=0 mu ms mu2 ms2
  (( $3 < 2 )) && threads=1
  [[ -n "${4:-}" ]] && read -r pu ps <<<"$(cpu_ticks "$4")"
  read -r mu ms <<<"$(cpu_ticks "$fake_pid")"
  # wrk's own CPU time from its rusage, printed after its report.
  out=$(/usr/bin/python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print("wrk-cpu %f" % (u.ru_utime + u.ru_stime))' \
    wrk -t$threads -c"$3" -d"${duration}s" --latency -s "$work/post.lua" "$2" 2>&1)
  [[ -n "${4:-}" ]] && read -r pu2 ps2 <<<"$(cpu_ticks "$4")"
  read -r mu2 ms2 <<<"$(cpu_ticks "$fake_pid")"
  local rps p50 p99 n wrk_s
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  wrk_s=$(echo "$out" | awk '/^wrk-cpu/ {print $2}')
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$1: $(echo "$out" | grep Non-2xx)" >&2
  fi
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_us "$p50") $(to_us "$p99") $(/usr/bin/python3 -c "
us = lambda ticks: ticks / $tick / $n * 1e6
print('%.2f %.2f %.2f %.2f' % (us($pu2 - $pu), us($ps2 - $ps),
      us($mu2 + $ms2 - $mu - $ms), $wrk_s / $n * 1e6))")"
}
to_us() {  # wrk prints 123.45us, 1.23ms, 1.00s
  /usr/bin/python3 -c "
v='$1'
for suf,mul in (('us',1),('ms',1e3),('s',1e6)):
    if v.endswith(suf): print(round(float(v[:-len(suf)])*mul,1)); break
else: print('nan')"
}
if [[ -z "$only" ]]; then
targets=("direct http://127.0.0.1:$up_port/v1/chat/completions"
         "modelproxy http://127.0.0.1:$px_port/v1/chat/completions $px_pid"
         "nginx http://127.0.0.1:$ng_port/v1/chat/completions $ng_pid"
         "nghttpx http://127.0.0.1:$nx_port/v1/chat/completions $nx_pid")
: >"$work/rounds.txt"
for conns in "$connections" 1; do
  for ((r = 1; r <= rounds; r++)); do
    for t in "${targets[@]}"; do
      read -r name url pid <<<"$t"
      echo "$conns $r $name $(run "$name" "$url" "$conns" "$pid")" >>"$work/rounds.txt"
    done
  done
done
/usr/bin/python3 - "$work/rounds.txt" "$connections" "$rounds" "$duration" "$workers" <<'PY'
import statistics, sys
path, conns, rounds, duration, workers = sys.argv[1:]
rows = {}  # (connections, round) -> name -> (rps, p50, p99, CPU us a request:
#            proxy user, proxy sys, model, wrk)
for line in open(path):
    c, r, name, *v = line.split()
    rows.setdefault((c, r), {})[name] = tuple(float(x) for x in v)
names = ['direct', 'modelproxy', 'nginx', 'nghttpx']
def median_of(c, f):
    return statistics.median(f(v) for (cc, _), v in rows.items() if cc == c)
for c, what in ((conns, 'throughput'), ('1', 'one connection: latency')):
    print('proxy: small non-streaming completions, wrk -c%s, %s rounds x %ss, '
          '%s worker(s) each (%s; medians over rounds)' % (c, rounds, duration, workers, what))
    for n in names:
        print('%-12s %10.0f req/s  p50 %8.0f us  p99 %8.0f us' % (
            n, median_of(c, lambda v: v[n][0]), median_of(c, lambda v: v[n][1]),
            median_of(c, lambda v: v[n][2])))
ratio = median_of(conns, lambda v: v['modelproxy'][0] / v['nginx'][0])
ratio_x = median_of(conns, lambda v: v['modelproxy'][0] / v['nghttpx'][0])
print('modelproxy / nginx throughput: %.2fx (target >= 1x: %s); modelproxy / nghttpx: %.2fx'
      % (ratio, 'met' if ratio >= 1 else 'MISSED', ratio_x))
# Where the CPU goes: on two cores shared by wrk, the model and the proxy,
# throughput is 2 cores / the CPU a request costs all of them.
print('CPU per request at %s connections, us (medians over rounds):' % conns)
for n in names:
    m = lambda i: median_of(conns, lambda v: v[n][i])
    print('%-12s proxy %5.1f (user %4.1f + sys %4.1f)  model %5.1f  wrk %5.1f  all %5.1f' % (
        n, m(3) + m(4), m(3), m(4), m(5), m(6), median_of(conns, lambda v: sum(v[n][3:7]))))
# The proxy's own CPU a request (user + system), against nginx's, within
# each round.
cpu = median_of(conns, lambda v: (v['modelproxy'][3] + v['modelproxy'][4]) /
                (v['nginx'][3] + v['nginx'][4]))
print('proxy CPU per request modelproxy/nginx %.2fx (target <= 1x: %s)'
      % (cpu, 'met' if cpu <= 1 else 'MISSED'))
# What the ratio would be if modelproxy's user-space time were zero and the
# rest unchanged: the room left to a faster proxy on this machine.
ceiling = median_of(conns, lambda v: sum(v['nginx'][3:7]) / (sum(v['modelproxy'][3:7]) - v['modelproxy'][3]))
print('modelproxy / nginx with no proxy user-space time at all (CPU bound): %.2fx' % ceiling)
added = {n: median_of('1', lambda v: v[n][1] - v['direct'][1]) for n in names[1:]}
print('added p50 latency vs direct (one connection): modelproxy %.0f us (target <= 50: %s), '
      'nginx %.0f us, nghttpx %.0f us' % (added['modelproxy'],
      'met' if added['modelproxy'] <= 50 else 'MISSED', added['nginx'], added['nghttpx']))
PY

# HTTP/2 cleartext (prior knowledge): the same completions, h2load with
# 16 connections x 8 concurrent streams; HTTP/1.1 to the upstream.
echo "$body" > "$work/body.json"
h2run() {  # url proxy_pid -> "rps mean_us proxy_user_us proxy_sys_us"
  local out pu ps pu2 ps2
  read -r pu ps <<<"$(cpu_ticks "$2")"
  out=$(h2load -t2 -c16 -m8 -D "$duration" -d "$work/body.json" \
    -H 'content-type: application/json' "$1" 2>&1)
  if ! echo "$out" | grep -q " 0 failed, 0 errored"; then
    echo "h2load $1: $(echo "$out" | grep 'requests:')" >&2
  fi
  read -r pu2 ps2 <<<"$(cpu_ticks "$2")"
  local rps mean n
  rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
  n=$(echo "$out" | awk '/^requests:/ {print $8}')
  echo "$rps $(to_us "$mean") $(/usr/bin/python3 -c "
us = lambda ticks: ticks / $tick / max($n, 1) * 1e6
print('%.2f %.2f' % (us($pu2 - $pu), us($ps2 - $ps)))")"
}
# Interleaved rounds, as the HTTP/1.1 runs: each ratio is taken within a
# round and the median over rounds printed.
: >"$work/h2.txt"
for ((r = 1; r <= rounds; r++)); do
  echo "$(h2run "http://127.0.0.1:$px_port/v1/chat/completions" "$px_pid")" \
    "$(h2run "http://127.0.0.1:$ng_h2_port/v1/chat/completions" "$ng_pid")" \
    "$(h2run "http://127.0.0.1:$nx_port/v1/chat/completions" "$nx_pid")" \
    >>"$work/h2.txt"
done
/usr/bin/python3 - "$work/h2.txt" "$rounds" "$duration" <<'PY'
import statistics, sys
rows = [[float(x) for x in line.split()] for line in open(sys.argv[1]) if line.strip()]
print('h2c: small non-streaming completions, h2load -c16 -m8, %s rounds x %ss (medians over rounds)'
      % (sys.argv[2], sys.argv[3]))
# Per subject: req/s, mean latency, the proxy's user and system CPU a request.
for i, name in enumerate(['modelproxy', 'nginx', 'nghttpx']):
    m = lambda k: statistics.median(r[4 * i + k] for r in rows)
    print('%-12s %10.0f req/s  mean %8.0f us  proxy CPU %5.1f us (user %4.1f + sys %4.1f)'
          % (name, m(0), m(1), m(2) + m(3), m(2), m(3)))
to_x = statistics.median(r[0] / r[8] for r in rows)
print('h2c throughput: modelproxy / nginx %.2fx, modelproxy / nghttpx %.2fx (target >= 1x: %s)' % (
    statistics.median(r[0] / r[4] for r in rows), to_x, 'met' if to_x >= 1 else 'MISSED'))
PY

fi
# SSE: per-chunk latency, 50 streams of 40 chunks at 20 chunks/s each,
# read by a C++ client on epoll (sse_client.cc); tcp_relay (a relay that only
# copies bytes) shows what the extra hop alone costs on this machine.
sse="/usr/bin/python3 $here/tools/bench/proxy/sse_bench.py"
sse_client="$here/tools/bench/proxy/sse_client"
"$here/tools/bench/proxy/tcp_relay" "$relay_port" "$sse_port" &
pids+=($!)
curl -sf "http://127.0.0.1:$px_port/v1/chat/completions" \
  -d '{"model":"sse","messages":[],"max_tokens":1}' >/dev/null
curl -sf "http://127.0.0.1:$px_port/v1/chat/completions" \
  -d '{"model":"slow","messages":[],"max_tokens":1}' >/dev/null
# Interleaved rounds, as above: the added p50 is taken within a round.
: >"$work/sse.txt"
for ((r = 1; r <= rounds; r++)); do
  for t in "direct $sse_port" "modelproxy $px_port" "nginx $ng_sse_port" \
           "relay $relay_port"; do
    read -r name port <<<"$t"
    echo "$r $name $("$sse_client" 127.0.0.1 "$port" /v1/chat/completions)" >>"$work/sse.txt"
  done
done
/usr/bin/python3 - "$work/sse.txt" "$rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, name, p50, p99 = line.split()[:4]
    rows.setdefault(r, {})[name] = (float(p50), float(p99))
print('sse: per-chunk latency, upstream write to client read, 50 streams x 40 chunks '
      '(%s rounds; medians)' % sys.argv[2])
for n in ('direct', 'modelproxy', 'nginx', 'relay'):
    print('%-12s p50 %8.1f us  p99 %8.1f us' % (
        n, statistics.median(v[n][0] for v in rows.values()),
        statistics.median(v[n][1] for v in rows.values())))
# What a hop adds, within each round (the same upstream, the same moment):
# its p50 and its p99 less the direct path's.
added = {(n, i): statistics.median(v[n][i] - v['direct'][i] for v in rows.values())
         for n in ('modelproxy', 'nginx', 'relay') for i in (0, 1)}
print('added per-chunk p50: modelproxy %.0f us, nginx %.0f us, relay (the hop alone) %.0f us'
      % (added['modelproxy', 0], added['nginx', 0], added['relay', 0]))
print('added per-chunk p99: modelproxy %.0f us, nginx %.0f us, relay (the hop alone) %.0f us'
      % (added['modelproxy', 1], added['nginx', 1], added['relay', 1]))
# A ratio of the added latencies (a floor of 1 us keeps it finite).
r50 = max(added['modelproxy', 0], 1) / max(added['nginx', 0], 1)
r99 = max(added['modelproxy', 1], 1) / max(added['nginx', 1], 1)
print('sse added p50 modelproxy/nginx %.2fx (target <= 1x: %s)' % (r50, 'met' if r50 <= 1 else 'MISSED'))
print('sse added p99 modelproxy/nginx %.2fx (target <= 1.5x: %s)' % (r99, 'met' if r99 <= 1.5 else 'MISSED'))
PY

if [[ -z "$only" ]]; then
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

fi