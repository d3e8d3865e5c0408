"""Proxy memory per in-flight large upload: N clients each send a 60 MiB
JSON body at once (a long prompt, as a big document or base64 image would
be), through modelproxy and through nginx (its default request buffering:
bodies over its in-memory buffer go to a temporary file), to the same
fake_upstream. Reported per proxy: the growth of its peak resident memory
(VmHWM, reset before the uploads through /proc/<pid>/clear_refs) divided
by the bytes in flight, and its resident memory once the uploads are done.
Target: modelproxy's peak ≤ 1.2x the bodies in flight.

    bazel run -c opt //tools/bench/proxy:body -- [--uploads 4] [--mib 60] [--rounds 2]
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def tree(pid):
    """pid and its descendants (nginx: master and workers)."""
    out = [pid]
    for p in list(out):
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    out += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def reset_peaks(pids):
    for p in pids:
        with open("/proc/%d/clear_refs" % p, "w") as f:
            f.write("5")  # Resets VmHWM to the current RSS.


def upload(port, body, results, i):
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        results[i] = data.split(b" ", 2)[1] if data else b"none"
    finally:
        s.close()


def run(port, pids, body, uploads):
    time.sleep(0.5)
    base = sum(status(p, "VmRSS") for p in pids)
    reset_peaks(pids)
    results = [None] * uploads
    threads = [threading.Thread(target=upload, args=(port, body, results, i))
               for i in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = sum(status(p, "VmHWM") for p in pids)
    time.sleep(2)  # Time to hand memory back.
    after = sum(status(p, "VmRSS") for p in pids)
    return results, base, peak, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=4)
    ap.add_argument("--mib", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    here = os.getcwd()
    fake = os.path.join(here, "tools/fake_upstream/fake_upstream")
    work = tempfile.mkdtemp()
    os.chmod(work, 0o755)  # nginx's workers (another user) keep bodies in it.
    up, mm, px, ng = free_port(), free_port(), free_port(), free_port()
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write("models:\n  bench:\n    cmd: %s --port %d --tokens 4\n"
                "    proxy: http://127.0.0.1:%d\n    concurrencyLimit: 1000\n"
                % (fake, up, up))
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(here, "server/modelmanager"), "--config",
             os.path.join(work, "config.yaml"), "--listen", "127.0.0.1:%d" % mm,
             "--log-level", "warn"], stderr=subprocess.DEVNULL))
        proxy = subprocess.Popen(
            [os.path.join(here, "proxy/modelproxy"), "--listen", "127.0.0.1:%d" % px,
             "--manager", "127.0.0.1:%d" % mm, "--workers", "2"],
            stderr=subprocess.DEVNULL)
        procs.append(proxy)
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write("""worker_processes 2; pid %(w)s/nginx.pid; daemon off;
error_log %(w)s/nginx.err warn;
events { worker_connections 1024; }
http { access_log off; client_max_body_size 128m;
  client_body_temp_path %(w)s/body; proxy_temp_path %(w)s/proxy;
  fastcgi_temp_path %(w)s/f; uwsgi_temp_path %(w)s/u; scgi_temp_path %(w)s/s;
  upstream fake { server 127.0.0.1:%(up)d; keepalive 16; }
  server { listen 127.0.0.1:%(ng)d;
    location / { proxy_pass http://fake; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; } } }
""" % {"w": work, "up": up, "ng": ng})
        nginx = subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf")],
                                 stderr=subprocess.DEVNULL)
        procs.append(nginx)
        # Wait for the model (a first small request starts it).
        small = json.dumps({"model": "bench", "prompt": "x"}).encode()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                r = [None]
                upload(px, small, r, 0)
                if r[0] == b"200":
                    break
            except OSError:
                pass
            time.sleep(0.1)
        prompt = "x" * ((args.mib << 20) - 40)
        body = json.dumps({"model": "bench", "prompt": prompt}).encode()
        in_flight = args.uploads * len(body)
        print("uploads: %d x %.1f MiB at once" % (args.uploads, len(body) / 2**20))
        for rnd in range(args.rounds):
            for name, port, proc in [("modelproxy", px, proxy), ("nginx", ng, nginx)]:
                pids = tree(proc.pid)
                results, base, peak, after = run(port, pids, body, args.uploads)
                print("round %d %-10s status %s  rest %6.1f MiB  peak +%6.1f MiB "
                      "(%.2fx the bodies in flight)  after %6.1f MiB"
                      % (rnd + 1, name, ",".join(x.decode() for x in results),
                         base / 2**20, (peak - base) / 2**20,
                         (peak - base) / in_flight, after / 2**20))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
