"""Sleep and wake against stop and start (docs/gpu.md#sleep-and-wake): two
models in one swap group, swapped back and forth through the real
modelmanager with Start, once as plain models (each swap stops one process
and starts the other) and once with `sleep` and `wake` (each swap puts one
to sleep and wakes the other, vLLM's endpoints on fake_upstream). The
fake models take no time to load or to wake, so what is measured is
modelmanager's own path: a spawn, a listening socket and health checks
against an HTTP call and a health check. Rounds alternate the two setups.

    bazel run -c opt //tools/bench/gpu:sleep -- [--swaps 40] [--rounds 3]
"""

import argparse
import statistics
import sys
import time

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess
from tools.testing.fake_upstream_proc import use_own_runfiles

use_own_runfiles(__file__)

SLEEP = ["    sleep: /sleep?level=1", "    wake: /wake_up"]
GROUP = "groups:\n  g: {swap: true, members: [a, b]}\n"


def swaps(sleep, n):
    """Seconds each Start of the other model took (the swap), n of them."""
    yaml = {m: list(SLEEP) if sleep else [] for m in ("a", "b")}
    with ManagerProcess({"a": [], "b": []}, model_yaml=yaml, extra_yaml=GROUP) as m:
        stub = m.stub()
        stub.Start(pb.StartRequest(model="a"), timeout=30)
        stub.Start(pb.StartRequest(model="b"), timeout=30)  # Warm both.
        took = []
        for i in range(n):
            model = "a" if i % 2 == 0 else "b"
            t0 = time.monotonic()
            r = stub.Start(pb.StartRequest(model=model), timeout=30)
            took.append(time.monotonic() - t0)
            assert r.state == pb.MODEL_STATE_READY
        other = stub.GetModel(pb.GetModelRequest(model="a" if n % 2 == 0 else "b"),
                              timeout=10)
        want = pb.MODEL_STATE_SLEEPING if sleep else pb.MODEL_STATE_STOPPED
        assert other.state == want, other
        return took


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--swaps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cold, warm = [], []
    for _ in range(args.rounds):
        cold += swaps(False, args.swaps)
        warm += swaps(True, args.swaps)
    c50, w50 = statistics.median(cold), statistics.median(warm)
    c90 = statistics.quantiles(cold, n=10)[-1]
    w90 = statistics.quantiles(warm, n=10)[-1]
    print("swap by Start, %d rounds x %d swaps (fake models: no load time)"
          % (args.rounds, args.swaps))
    print("  stop + start   p50 %7.1f ms  p90 %7.1f ms" % (c50 * 1e3, c90 * 1e3))
    print("  sleep + wake   p50 %7.1f ms  p90 %7.1f ms" % (w50 * 1e3, w90 * 1e3))
    print("swap p50 sleep-wake/stop-start %.2fx" % (w50 / c50))
    return 0 if w50 < c50 else 1


if __name__ == "__main__":
    sys.exit(main())
