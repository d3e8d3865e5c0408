"""One endpoint over three nodes against today's layout (docs/cluster.md,
"Bench"). Three modelmanagers on 127.0.0.2, 127.0.0.3 and 127.0.0.4 with
four fake models each, three of them on two nodes, one model at a time per
node (llama-swap's swap); a seeded mixed workload (Zipf-like popularity)
sent with a few requests in flight:

- cluster: two modelproxies, each over all three managers (placement);
- round-robin: one modelproxy per node over its own manager and a
  round-robin front, each node with every model (a front that does not
  read the body cannot know which node has which model, so every node must
  serve every one: docs/operations.md, "Several nodes").

Printed per layout: requests served, swaps (starts, counted from each
manager's Watch stream), the share of the requests for a model READY
somewhere when sent that went to a node where it was READY, and p50/p99
latency. Then what placement adds to a request for a READY model: wrk, one
connection, against a proxy over one manager and against one over three
where the model is READY on two (p50, interleaved rounds, medians).
Targets: share >= 99 %; cluster swaps <= 1/3 of round-robin's; placement
adds <= 50 us p50.

    bazel run -c opt //tools/bench/cluster -- [--requests 600] [--seed 7]
"""

import argparse
import collections
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

# Under `bazel run` the binaries are this program's runfiles.
if "TEST_SRCDIR" not in os.environ:
    here = os.path.abspath(__file__)
    at = here.find(".runfiles" + os.sep)
    os.environ["TEST_SRCDIR"] = (os.environ.get("RUNFILES_DIR")
                                 or (here[:at + len(".runfiles")] if at >= 0
                                     else here + ".runfiles"))

from modelplane.v1 import model_manager_pb2 as pb  # noqa: E402
from modelplane.v1 import model_manager_pb2_grpc as pb_grpc  # noqa: E402
from tests.manager.manager_proc import ManagerProcess  # noqa: E402
from tests.proxy.proxy_proc import ProxyProcess  # noqa: E402

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
MODELS = {"127.0.0.2": ["m1", "m2", "s12", "s31"],
          "127.0.0.3": ["m3", "m4", "s12", "s23"],
          "127.0.0.4": ["m5", "m6", "s23", "s31"]}
ALL = sorted({m for ms in MODELS.values() for m in ms})
# A start takes a while, as a real model's would (a swap costs).
FAKE = ["--tokens", "4", "--ready-after-ms", "150"]


class Watcher:
    """Each manager's Watch stream: every model's state now, and the starts."""

    def __init__(self, nodes):
        self.lock = threading.Lock()
        self.state = {}  # (node, model) -> state
        self.starts = 0
        self.calls = []
        for node, m in nodes.items():
            stub = pb_grpc.ModelManagerStub(m.channel)
            call = stub.Watch(pb.WatchRequest())
            self.calls.append(call)
            threading.Thread(target=self._run, args=(node, call), daemon=True).start()

    def _run(self, node, call):
        try:
            for e in call:
                if e.type not in (pb.WatchEvent.TYPE_ADDED, pb.WatchEvent.TYPE_MODIFIED):
                    continue
                with self.lock:
                    key = (node, e.model.id)
                    before = self.state.get(key)
                    if (e.model.state == pb.MODEL_STATE_STARTING
                            and before not in (None, pb.MODEL_STATE_STARTING)):
                        self.starts += 1
                    self.state[key] = e.model.state
        except Exception:
            pass  # Cancelled at the end.

    def ready_nodes(self, model):
        with self.lock:
            return {n for (n, m), s in self.state.items()
                    if m == model and s == pb.MODEL_STATE_READY}

    def close(self):
        for c in self.calls:
            c.cancel()


def start_nodes(models_by_host):
    nodes = {}
    for host in HOSTS:
        m = ManagerProcess({k: FAKE for k in models_by_host[host]}, host=host)
        m.start()
        nodes["%s:%d" % (host, m.port)] = m
    return nodes


def percentile(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def workload(n, seed):
    rng = random.Random(seed)
    order = list(ALL)
    rng.shuffle(order)
    weights = [1.0 / (i + 1) for i in range(len(order))]
    # Bursts: a client asks for the same model a few times in a row.
    out = []
    while len(out) < n:
        m = rng.choices(order, weights)[0]
        out += [m] * rng.randint(1, 4)
    return out[:n]


def run(layout, requests, concurrency, seed):
    by_host = MODELS if layout == "cluster" else {h: ALL for h in HOSTS}
    nodes = start_nodes(by_host)
    names = list(nodes)
    proxies = []
    try:
        if layout == "cluster":
            proxies = [ProxyProcess(names, workers=1) for _ in range(2)]
        else:
            proxies = [ProxyProcess([n], workers=1) for n in names]
        watcher = Watcher(nodes)
        # Every proxy knows every model before the clock starts.
        for p in proxies:
            deadline = time.time() + 20
            while time.time() < deadline:
                s, _, body = p.request("GET", "/v1/models")
                if s == 200 and len(json.loads(body)["data"]) == len(
                        ALL if layout != "cluster" else ALL):
                    break
                time.sleep(0.05)
        seq = workload(requests, seed)
        lock = threading.Lock()
        next_i = [0]
        rr = [0]
        results = []

        def client(k):
            conns = {}
            while True:
                with lock:
                    i = next_i[0]
                    if i >= len(seq):
                        return
                    next_i[0] += 1
                    turn = rr[0]
                    rr[0] += 1
                model = seq[i]
                if layout == "cluster":
                    target = i % len(proxies)
                else:
                    target = turn % len(proxies)  # Round-robin.
                ready = watcher.ready_nodes(model)
                conn = conns.get(target)
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", proxies[target].port,
                                                      timeout=120)
                    conns[target] = conn
                body = json.dumps({"model": model, "prompt": "hi", "max_tokens": 4})
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/completions", body,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    status = r.status
                    node = r.getheader("X-Modelplane-Node")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conns.pop(target, None)
                    status, node = 0, None
                dt = time.perf_counter() - t0
                with lock:
                    results.append((model, status, node, dt, ready))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        time.sleep(0.3)  # The last Watch events.
        watcher.close()
        served = [r for r in results if r[1] == 200]
        asked_ready = [r for r in served if r[4]]
        landed = [r for r in asked_ready if r[2] in r[4]]
        lat = [r[3] for r in served]
        return {
            "layout": layout,
            "requests": len(results),
            "served": len(served),
            "errors": collections.Counter(r[1] for r in results if r[1] != 200),
            "swaps": watcher.starts,
            "ready_share": len(landed) / max(1, len(asked_ready)),
            "ready_asked": len(asked_ready),
            "p50_ms": percentile(lat, 50) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            "wall_s": wall,
        }
    finally:
        for p in proxies:
            p.stop()
        for m in nodes.values():
            m.stop()


def wrk_p50(port, model, seconds):
    """wrk, one thread and connection, POSTing a small completion; p50 in us."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"model":"%s","prompt":"hi",'
                '"max_tokens":1}\'\nwrk.headers["Content-Type"] = "application/json"\n'
                % model)
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t1", "-c1", "-d%ds" % seconds, "--latency", "-s",
                              script, "http://127.0.0.1:%d/v1/completions" % port],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        os.unlink(script)
    m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)$", out, re.M)
    if not m:
        raise RuntimeError("no p50 in wrk's output:\n" + out)
    value = float(m.group(1))
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def placement_cost(seconds, rounds):
    """p50 for a READY model: a proxy over one manager vs one over three."""
    nodes = start_nodes({h: ["s", "x"] for h in HOSTS})
    names = list(nodes)
    single = multi = None
    try:
        # READY on the first two nodes; one model at a time per node.
        for n in names[:2]:
            nodes[n].stub().Start(pb.StartRequest(model="s"), timeout=30)
        single = ProxyProcess([names[0]], workers=1)
        multi = ProxyProcess(names, workers=1)
        for p in (single, multi):
            deadline = time.time() + 20
            while p.request("POST", "/v1/completions",
                            {"model": "s", "prompt": "hi", "max_tokens": 1})[0] != 200:
                if time.time() > deadline:
                    raise RuntimeError("no answer for s")
                time.sleep(0.05)
        a, b = [], []
        for _ in range(rounds):
            a.append(wrk_p50(single.port, "s", seconds))
            b.append(wrk_p50(multi.port, "s", seconds))
        return sorted(a)[len(a) // 2], sorted(b)[len(b) // 2]
    finally:
        for p in (single, multi):
            if p is not None:
                p.stop()
        for m in nodes.values():
            m.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--wrk-seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print("cluster bench: 3 nodes, models %s, %d requests, %d in flight, seed %d"
          % (json.dumps(MODELS), args.requests, args.concurrency, args.seed))
    rows = [run("cluster", args.requests, args.concurrency, args.seed),
            run("round-robin", args.requests, args.concurrency, args.seed)]
    print("%-12s %8s %7s %6s %11s %9s %9s %8s" % (
        "layout", "served", "errors", "swaps", "ready-share", "p50 ms", "p99 ms", "wall s"))
    for r in rows:
        print("%-12s %8d %7d %6d %10.2f%% %9.1f %9.1f %8.1f" % (
            r["layout"], r["served"], sum(r["errors"].values()), r["swaps"],
            100 * r["ready_share"], r["p50_ms"], r["p99_ms"], r["wall_s"]))
    cluster, rr = rows
    single, multi = placement_cost(args.wrk_seconds, args.rounds)
    added = multi - single
    print("READY model, p50 over %d rounds of %d s: one manager %.1f us, three "
          "(READY on two) %.1f us: placement adds %.1f us"
          % (args.rounds, args.wrk_seconds, single, multi, added))
    share_ok = cluster["ready_share"] >= 0.99
    swaps_ok = cluster["swaps"] * 3 <= rr["swaps"]
    added_ok = added <= 50
    print("targets: ready share %.2f%% >= 99%%: %s; swaps %d <= %d/3: %s; "
          "placement +%.1f us <= 50 us: %s"
          % (100 * cluster["ready_share"], "met" if share_ok else "NOT MET",
             cluster["swaps"], rr["swaps"], "met" if swaps_ok else "NOT MET",
             added, "met" if added_ok else "NOT MET"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
