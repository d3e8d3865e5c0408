"""The activity log's bench (docs/ui.md, "Bench").

1. A paged query at 100,000 rows: modelproxy over a SQLite store
   (`store.path`) filled with 100,000 requests (12 models, 3 % errors),
   asked GET /api/metrics/activity pages over one keep-alive connection: the
   newest page, a model's, an error status's, pages `before` a random
   id, and a model that has no row (every row looked at). p50/p95/p99 in ms. Target: p95 < 50 ms.
2. What writing activity costs: two stacks, one with the store and one
   without (the in-memory log only), driven by wrk in interleaved rounds;
   the median requests/s of each and their ratio, for streamed 32-token
   chat completions and for 1-token completions (the worst case: the most
   requests per second, each the least work). Every request answered must
   be in the store. Target: with streams, the store's >= 0.97x the
   in-memory's (at most 3 % less).

    bazel run -c opt //tools/bench/activity -- [--queries 400] [--rounds 5]
        [--only query|write]
"""

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing.fake_upstream_proc import runfile, use_own_runfiles

use_own_runfiles(__file__)

ROWS = 100000


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def query_bench(queries, seed):
    tmp = tempfile.mkdtemp()
    db = os.path.join(tmp, "activity.db")
    out = subprocess.run([runfile("tools/bench/activity/fill"), db, str(ROWS)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    with ManagerProcess({"model-0": []},
                        extra_yaml="store:\n  path: %s\n  maxRows: %d\n" % (db, ROWS)) as m:
        p = ProxyProcess(m.port, workers=2)
        try:
            if not p.wait_log(r"activity store .*ids after %d" % ROWS):
                raise RuntimeError("the store did not open: %s" % p.log())
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
            kinds = {"newest": [], "model": [], "status": [], "before": [], "rare": []}
            for i in range(queries):
                kind = list(kinds)[i % 5]
                # "rare": a model with no row at all (the worst case: every
                # row is looked at).
                q = {"newest": "?limit=100",
                     "model": "?limit=100&model=model-%d" % rng.randrange(12),
                     "status": "?limit=100&status=%d" % rng.choice([503, 400]),
                     "before": "?limit=100&before=%d" % rng.randrange(2, ROWS),
                     "rare": "?limit=100&model=nobody"}[kind]
                t = time.perf_counter()
                conn.request("GET", "/api/metrics/activity" + q)
                r = conn.getresponse()
                body = r.read()
                kinds[kind].append((time.perf_counter() - t) * 1000)
                if r.status != 200 or (kind != "rare" and not json.loads(body)["activity"]):
                    raise RuntimeError("query %s: %d %s" % (q, r.status, body[:200]))
            conn.close()
            return kinds
        finally:
            p.stop()


# The two workloads: a streamed chat completion of 32 tokens (what an LLM
# proxy mostly carries), and the worst case for the log, a 1-token
# completion (the least work per request, so the most requests per second).
WORKLOADS = {
    "stream": '{"model":"m","stream":true,"max_tokens":32,'
              '"messages":[{"role":"user","content":"hi"}]}',
    "small": '{"model":"m","prompt":"hi","max_tokens":1}',
}
PATHS = {"stream": "/v1/chat/completions", "small": "/v1/completions"}


def wrk_rps(port, seconds, connections, workload):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.body = \'%s\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                % WORKLOADS[workload])
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "-s",
                              script, "http://127.0.0.1:%d%s" % (port, PATHS[workload])],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        os.unlink(script)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("no Requests/sec in wrk's output:\n" + out)
    return float(m.group(1))


def store_thread_cpu(pid):
    """CPU seconds of the proxy's store writer thread ("activity-store")."""
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
            if f.read().strip() != "activity-store":
                continue
        with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError("no activity-store thread in the proxy")


def machine_busy():
    """CPU seconds the whole machine has been busy (every CPU, every
    process and kernel thread: the kernel's writeback of the store's file
    included), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: all but idle and
    # iowait.
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def thread_ticks():
    """{(process name, thread name): CPU ticks} of every thread on the
    machine (kernel threads included)."""
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                proc = f.read().strip()
            for tid in os.listdir("/proc/%s/task" % pid):
                with open("/proc/%s/task/%s/stat" % (pid, tid)) as f:
                    stat = f.read()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat.rsplit(")", 1)[1].split()
                key = (proc, re.sub(r"\d+", "N", name))
                ticks[key] = ticks.get(key, 0) + int(fields[11]) + int(fields[12])
        except (OSError, ValueError):
            continue  # A process or thread that ended meanwhile.
    return ticks


def written_bytes(pid):
    """Bytes the process has sent to the storage layer (/proc/PID/io)."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/%d/io" % pid)


def write_cost(seconds, rounds, connections, workload, threads=False):
    tmp = tempfile.mkdtemp()
    stacks = []
    try:
        for store in (True, False):
            extra = "store:\n  path: %s\n" % os.path.join(tmp, "cost.db") if store else ""
            m = ManagerProcess({"m": ["--tokens", "1"]}, extra_yaml=extra)
            m.start()
            p = ProxyProcess(m.port, workers=2)
            stacks.append((m, p))
            if store and not p.wait_log(r"activity store "):
                raise RuntimeError("the store did not open: %s" % p.log())
            deadline = time.time() + 20
            while p.request("POST", "/v1/completions",
                            {"model": "m", "prompt": "hi", "max_tokens": 1})[0] != 200:
                if time.time() > deadline:
                    raise RuntimeError("no answer")
                time.sleep(0.05)
        # Interleaved rounds, the order alternating (this machine's speed
        # drifts by 10 % between minutes): the ratio is taken within a round
        # and the median over rounds reported.
        with_store, memory, ratios = [], [], []
        per_thread = [{}, {}]  # --threads: CPU ticks by thread, each stack
        busy = [0.0, 0.0]  # machine CPU seconds while each stack was driven
        served = [0.0, 0.0]  # requests it served meanwhile (wrk's rate x time)
        cpu_before = store_thread_cpu(stacks[0][1].proc.pid)
        bytes_before = written_bytes(stacks[0][1].proc.pid)
        for r in range(rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            rps = {}
            for i in order:
                # A second of the same load first: a stack driven just
                # before is faster by up to 10 % here (with the order
                # alternating, each one would be in every other round).
                wrk_rps(stacks[i][1].port, 1, connections, workload)
                b = machine_busy()
                t = thread_ticks() if threads else {}
                rps[i] = wrk_rps(stacks[i][1].port, seconds, connections, workload)
                busy[i] += machine_busy() - b
                if threads:
                    for k, v in thread_ticks().items():
                        per_thread[i][k] = per_thread[i].get(k, 0) + v - t.get(k, 0)
                served[i] += rps[i] * seconds
            with_store.append(rps[0])
            memory.append(rps[1])
            ratios.append(rps[0] / rps[1])
            print("  round %d: with the store %.0f req/s, in memory only %.0f req/s, "
                  "%.3fx" % (r + 1, rps[0], rps[1], ratios[-1]), flush=True)
        # Every request answered is in the store (none dropped to keep up).
        p = stacks[0][1]
        deadline = time.time() + 30
        answered = stored = -1
        while time.time() < deadline:
            metrics = p.request("GET", "/metrics")[2].decode()
            answered = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                           if l.startswith("modelproxy_requests_total{model=\"m\""))
            page = json.loads(p.request("GET", "/api/metrics/activity?limit=1")[2])
            stored = page["activity"][0]["id"] if page["activity"] else 0
            if stored >= answered:
                break
            time.sleep(0.2)
        if threads:
            # Where the CPU went while each stack was driven, a request,
            # by process and thread (the busiest of either).
            hz = os.sysconf("SC_CLK_TCK")
            keys = sorted(set(per_thread[0]) | set(per_thread[1]),
                          key=lambda k: -max(per_thread[0].get(k, 0),
                                             per_thread[1].get(k, 0)))
            print("  CPU a request by thread (us): with the store / in memory only")
            for k in keys[:16]:
                print("    %-16s %-18s %6.2f %6.2f" % (
                    k[0], k[1],
                    per_thread[0].get(k, 0) / hz / max(served[0], 1) * 1e6,
                    per_thread[1].get(k, 0) / hz / max(served[1], 1) * 1e6))
        cpu = store_thread_cpu(p.proc.pid) - cpu_before
        written = written_bytes(p.proc.pid) - bytes_before
        return {"store_rps": sorted(with_store)[rounds // 2],
                "memory_rps": sorted(memory)[rounds // 2],
                "ratio": sorted(ratios)[rounds // 2],
                "answered": int(answered), "stored": stored,
                "thread_us": cpu / max(stored, 1) * 1e6,
                "bytes": written / max(stored, 1),
                "store_machine_us": busy[0] / max(served[0], 1) * 1e6,
                "memory_machine_us": busy[1] / max(served[1], 1) * 1e6}
    finally:
        for m, p in stacks:
            p.stop()
            m.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", choices=["query", "write"])
    ap.add_argument("--threads", action="store_true",
                    help="print where the CPU goes, thread by thread")
    args = ap.parse_args()
    p95 = None
    if args.only != "write":
        kinds = query_bench(args.queries, args.seed)
        every = [t for ts in kinds.values() for t in ts]
        print("activity store, %d rows, %d queries of 100 rows over HTTP:"
              % (ROWS, len(every)))
        for kind, ts in list(kinds.items()) + [("all", every)]:
            print("  %-7s p50 %6.2f ms  p95 %6.2f ms  p99 %6.2f ms" % (
                kind, percentile(ts, 50), percentile(ts, 95), percentile(ts, 99)),
                flush=True)
        p95 = percentile(every, 95)
    ratios = {}
    for workload in ("stream", "small") if args.only != "query" else ():
        c = write_cost(args.seconds, args.rounds, args.connections, workload,
                       args.threads)
        ratios[workload] = c["ratio"]
        print("writing activity, %s (%s), wrk -t2 -c%d, %d interleaved rounds x %d s, "
              "medians: with the store %.0f req/s, in memory only %.0f req/s, "
              "ratio within a round %.3fx; %d answered, %d stored; the store's "
              "thread %.2f us of CPU an entry, %.0f bytes an entry written; "
              "the whole machine's CPU a request %.1f us with the store, %.1f us "
              "in memory only (%+.1f %%)"
              % (workload, WORKLOADS[workload], args.connections, args.rounds,
                 args.seconds, c["store_rps"], c["memory_rps"], c["ratio"],
                 c["answered"], c["stored"], c["thread_us"], c["bytes"],
                 c["store_machine_us"], c["memory_machine_us"],
                 (c["store_machine_us"] / c["memory_machine_us"] - 1) * 100),
              flush=True)
    verdicts = []
    if p95 is not None:
        verdicts.append("query p95 < 50 ms: %s" % ("met" if p95 < 50 else "MISSED"))
    if ratios:
        verdicts.append("writing costs <= 3 %% (streams): %s"
                        % ("met" if ratios["stream"] >= 0.97 else "MISSED"))
    print("targets: " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
