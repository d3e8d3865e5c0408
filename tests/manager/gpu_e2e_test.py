"""GPU memory as a scheduling resource, end to end with no GPU: the real
modelmanager loads tools/fake_nvml's libnvidia-ml.so.1 by its real dlopen
path (LD_LIBRARY_PATH), and fake_upstream models take memory of the fake
GPUs at start (--vram-mib), refusing with CUDA's out-of-memory words when it
is not free (and logging the refusal in oom.log)."""

import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import AcquireStream, ManagerProcess, free_port, scrape, value
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

READY = pb.MODEL_STATE_READY
STOPPED = pb.MODEL_STATE_STOPPED
MIB = 1024 * 1024


class FakeGpus:
    """A fake GPU state directory: `sizes` in MiB, one per GPU."""

    def __init__(self, *sizes):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        with open(os.path.join(self.dir, "gpus"), "w") as f:
            for s in sizes:
                f.write("%d Fake GPU\n" % s)

    def env(self):
        lib = os.path.dirname(os.path.abspath(runfile("tools/fake_nvml/libnvidia-ml.so.1")))
        return {"FAKE_NVML_DIR": self.dir, "LD_LIBRARY_PATH": lib}

    def ooms(self):
        try:
            with open(os.path.join(self.dir, "oom.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        self.tmp.cleanup()


class WatchUntil:
    """Reads `m`'s Watch stream on a thread of its own until an event
    matches `pred`; `events` holds what came. close() ends it."""

    def __init__(self, m, pred, request=None):
        self.stream = m.stub().Watch(request or pb.WatchRequest(), timeout=60)
        self.events = []
        self.matched = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(pred,))
        self.thread.start()

    def _read(self, pred):
        try:
            for e in self.stream:
                self.events.append(e)
                if pred(e):
                    self.matched.set()
                    return
        except grpc.RpcError:
            pass

    def wait(self, timeout):
        return self.matched.wait(timeout)

    def close(self):
        self.stream.cancel()
        self.thread.join()


def manager(gpus, models, model_yaml, extra_yaml="", flags=()):
    return ManagerProcess(models, model_yaml=model_yaml, extra_yaml=extra_yaml,
                          flags=list(flags), env=gpus.env())


def states(m):
    return {x.id: x.state for x in m.stub().ListModels(pb.ListModelsRequest(), timeout=10).models}


def start(m, model, timeout=30):
    return m.stub().Start(pb.StartRequest(model=model), timeout=timeout)


class OneGpuNoGroupsTest(unittest.TestCase):
    """Three models of 4000 MiB on one 10240 MiB GPU (9728 usable past the
    5 % reserve): two fit together, three do not; no groups."""

    def setUp(self):
        self.gpus = FakeGpus(10240)
        models = {m: ["--vram-mib", "4000"] for m in ("a", "b", "c")}
        yaml = {m: ["    resources: {vramMiB: 4000}"] for m in models}
        self.m = manager(self.gpus, models, yaml)
        self.m.start()

    def tearDown(self):
        self.m.stop()
        self.gpus.cleanup()

    def test_two_that_fit_run_together_and_the_third_evicts_the_least_recent(self):
        self.assertIsNotNone(self.m.wait_log(r"GPU memory scheduling on: 1 GPU"))
        start(self.m, "a")
        start(self.m, "b")
        self.assertEqual(states(self.m), {"a": READY, "b": READY, "c": STOPPED})
        start(self.m, "c")
        s = states(self.m)
        self.assertEqual(s["c"], READY)
        self.assertEqual(s["a"], STOPPED, "a was used least recently")
        self.assertEqual(s["b"], READY)
        self.assertEqual(self.gpus.ooms(), "")

    def test_watch_with_gpus_tells_the_memory_before_the_bookmark_and_as_it_moves(self):
        want_used = 4000 * MIB
        w = WatchUntil(self.m, lambda e: e.type == pb.WatchEvent.TYPE_GPUS and
                       e.gpus[0].used_bytes >= want_used,
                       pb.WatchRequest(include_gpus=True))
        events = w.events
        try:
            start(self.m, "a")
            self.assertTrue(w.wait(20), [pb.WatchEvent.Type.Name(e.type) for e in events])
        finally:
            w.close()
        types = [e.type for e in events]
        first = types.index(pb.WatchEvent.TYPE_GPUS)
        self.assertLess(first, types.index(pb.WatchEvent.TYPE_BOOKMARK),
                        "the GPUs in force come before the first bookmark")
        g = events[first].gpus
        self.assertEqual(len(g), 1)
        self.assertEqual(g[0].index, 0)
        self.assertEqual(g[0].total_bytes, 10240 * MIB)
        self.assertEqual(g[0].used_bytes, 0)
        self.assertEqual(g[0].free_bytes, 10240 * MIB)
        self.assertTrue(g[0].trusted)
        last = events[-1].gpus[0]
        self.assertEqual(last.free_bytes, last.total_bytes - last.used_bytes)
        # The same figures as ListModels gives.
        listed = self.m.stub().ListModels(pb.ListModelsRequest(), timeout=10).gpus[0]
        self.assertEqual(listed.total_bytes, last.total_bytes)
        self.assertGreaterEqual(listed.used_bytes, want_used)
        # A watcher that did not ask gets no GPU events.
        plain = self.m.stub().Watch(pb.WatchRequest(), timeout=5)
        seen = []
        try:
            for e in plain:
                seen.append(e.type)
                if e.type == pb.WatchEvent.TYPE_BOOKMARK:
                    break
        finally:
            plain.cancel()
        self.assertNotIn(pb.WatchEvent.TYPE_GPUS, seen)

    def test_alternating_traffic_never_overfills_and_does_not_thrash(self):
        seen_over = []
        stop = threading.Event()

        def watch():
            # Never more than two READY at once (two fit, three do not).
            while not stop.is_set():
                try:
                    n = sum(1 for v in states(self.m).values() if v == READY)
                except grpc.RpcError:
                    break
                if n > 2:
                    seen_over.append(n)
                time.sleep(0.01)

        t = threading.Thread(target=watch)
        t.start()
        try:
            for model in ["a", "b", "c", "a", "b", "c", "a", "c"]:
                start(self.m, model)
            # Two models that fit together, alternately: no swaps at all.
            start(self.m, "a")
            start(self.m, "b")
            pids = {x: self.m.model(x).pid for x in ("a", "b")}
            for model in ["a", "b"] * 5:
                start(self.m, model)
            self.assertEqual({x: self.m.model(x).pid for x in ("a", "b")}, pids)
        finally:
            stop.set()
            t.join()
        self.assertEqual(seen_over, [])
        self.assertEqual(self.gpus.ooms(), "")

    def test_a_busy_model_is_not_evicted_while_a_start_waits(self):
        start(self.m, "a")
        start(self.m, "b")
        holder = AcquireStream(self.m.stub())
        holder.acquire("a", request_id="ra")
        granted_a = holder.wait("granted", "a")
        self.assertIsNotNone(granted_a)
        # c needs one of them out: b, idle, goes (a is older but busy).
        start(self.m, "c")
        s = states(self.m)
        self.assertEqual((s["a"], s["b"], s["c"]), (READY, STOPPED, READY))
        # a and c both busy: b waits, evicting neither.
        holder.acquire("c", request_id="rc")
        granted_c = holder.wait("granted", "c")
        self.assertIsNotNone(granted_c)
        waiter = self.m.stub().Start.future(pb.StartRequest(model="b"), timeout=30)
        time.sleep(0.5)  # A wait: nothing may happen in it.
        s = states(self.m)
        self.assertEqual((s["a"], s["b"], s["c"]), (READY, STOPPED, READY))
        self.assertFalse(waiter.done())
        holder.release("c", granted_c.lease_id)
        self.assertEqual(waiter.result().state, READY)
        s = states(self.m)
        self.assertEqual((s["a"], s["c"]), (READY, STOPPED))
        holder.close()
        self.assertEqual(self.gpus.ooms(), "")


class OverdueTest(unittest.TestCase):
    """The same three models, c with maxQueueWait 1 s: past it, the busy
    model its start needs gone is revoked, drains and is stopped."""

    def test_past_max_queue_wait_the_least_recent_busy_model_is_revoked(self):
        gpus = FakeGpus(10240)
        models = {m: ["--vram-mib", "4000"] for m in ("a", "b", "c")}
        yaml = {m: ["    resources: {vramMiB: 4000}"] for m in models}
        yaml["c"].append("    maxQueueWait: 1")
        with manager(gpus, models, yaml) as m:
            holder = AcquireStream(m.stub())
            holder.acquire("a", request_id="ra")
            granted_a = holder.wait("granted", "a")
            self.assertIsNotNone(granted_a)
            time.sleep(0.05)  # a is the least recently used of the two.
            holder.acquire("b", request_id="rb")
            self.assertIsNotNone(holder.wait("granted", "b"))
            t0 = time.monotonic()
            waiter = m.stub().Start.future(pb.StartRequest(model="c"), timeout=30)
            self.assertIsNotNone(holder.wait("revoked", "a"), "overdue: a revoked")
            self.assertGreaterEqual(time.monotonic() - t0, 0.9, "not before 1 s")
            self.assertEqual(states(m)["a"], READY, "a drains first")
            self.assertFalse(waiter.done())
            holder.release("a", granted_a.lease_id)
            self.assertEqual(waiter.result().state, READY)
            s = states(m)
            self.assertEqual((s["a"], s["b"], s["c"]), (STOPPED, READY, READY))
            self.assertIsNone(holder.wait("revoked", "b", timeout=0.5))
            holder.close()
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()


class DriverWaitTest(unittest.TestCase):
    """One 8192 MiB GPU, two models of 5000 MiB: one at a time. The fake
    driver gives a stopped model's memory back 1.5 s late."""

    def test_the_next_start_waits_for_the_memory_and_runs_out_of_none(self):
        gpus = FakeGpus(8192)
        models = {m: ["--vram-mib", "5000", "--vram-release-lag-ms", "1500"]
                  for m in ("a", "b")}
        yaml = {m: ["    resources: {vramMiB: 5000}"] for m in models}
        with manager(gpus, models, yaml) as m:
            for model in ["a", "b", "a", "b"]:
                start(m, model)
                s = states(m)
                self.assertEqual(s[model], READY)
                self.assertEqual(sum(1 for v in s.values() if v == READY), 1)
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()

    def test_past_the_bound_the_gpu_is_untrusted_until_the_memory_is_back(self):
        gpus = FakeGpus(8192)
        models = {m: ["--vram-mib", "5000", "--vram-release-lag-ms", "2500"]
                  for m in ("a", "b")}
        yaml = {m: ["    resources: {vramMiB: 5000}"] for m in models}
        port = free_port()
        with manager(gpus, models, yaml, extra_yaml="gpu: {memoryWaitTimeout: 0.3}",
                     flags=["--metrics-listen", "127.0.0.1:%d" % port]) as m:
            start(m, "a")
            start(m, "b")  # Waits the driver out, past the bound.
            self.assertIsNotNone(m.wait_log(r"GPU 0: the driver has not given back 5000 MiB"))
            self.assertIsNotNone(m.wait_log(r"GPU 0: the stopped model's memory is back"))
            s = scrape(port)
            self.assertEqual(value(s, "modelmanager_gpu_memory_wait_timeouts_total", gpu="0"), 1)
            self.assertEqual(value(s, "modelmanager_gpu_trusted", gpu="0"), 1)
            self.assertEqual(value(s, "modelmanager_gpu_memory_total_bytes", gpu="0"), 8192 * MIB)
            self.assertEqual(value(s, "modelmanager_gpu_memory_used_bytes", gpu="0"), 5000 * MIB)
            self.assertEqual(value(s, "modelmanager_model_vram_footprint_bytes", model="b"),
                             5000 * MIB)
            self.assertEqual(value(s, "modelmanager_model_vram_used_bytes", model="b"),
                             5000 * MIB)
            self.assertEqual(value(s, "modelmanager_model_vram_used_bytes", model="a"), 0)
            self.assertEqual(states(m)["b"], READY)
            gpu = m.stub().ListModels(pb.ListModelsRequest(), timeout=10).gpus[0]
            self.assertTrue(gpu.trusted)
            self.assertEqual(gpu.total_bytes, 8192 * MIB)
            self.assertEqual(gpu.used_bytes, 5000 * MIB)
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()


class OomRetryTest(unittest.TestCase):
    def test_out_of_memory_at_start_evicts_the_idle_and_retries_once(self):
        gpus = FakeGpus(10240)
        # b declares 3000 MiB but takes 7000: beside a's 4000 it runs out
        # of memory; a (idle) is evicted and b's second start fits. A group
        # without swap lets them run together by the rules.
        models = {"a": ["--vram-mib", "4000"], "b": ["--vram-mib", "7000"]}
        yaml = {"b": ["    resources: {vramMiB: 3000}"]}
        extra = "groups:\n  g: {swap: false, members: [a, b]}"
        with manager(gpus, models, yaml, extra_yaml=extra) as m:
            start(m, "a")
            self.assertEqual(start(m, "b").state, READY)
            self.assertEqual(states(m), {"a": STOPPED, "b": READY})
            self.assertIsNotNone(m.wait_log(
                r"model b ran out of GPU memory at start; evicted a; trying once more"))
            ooms = gpus.ooms().splitlines()
            self.assertEqual(len(ooms), 1, ooms)
            self.assertIn("7000 MiB asked", ooms[0])
        gpus.cleanup()

    def test_a_second_out_of_memory_fails_the_start(self):
        gpus = FakeGpus(10240)
        # Another program holds 8000 MiB of the GPU: nothing to evict.
        with open(os.path.join(gpus.dir, "proc.1"), "w") as f:
            f.write("0 8000 0\n")  # pid 1 (init) lives as long as the test.
        with manager(gpus, {"b": ["--vram-mib", "4000"]},
                     {"b": ["    resources: {vramMiB: 1000}"]}) as m:
            with self.assertRaises(grpc.RpcError) as e:
                start(m, "b")
            self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION, m.log())
            self.assertIn("out of memory", e.exception.details())
            self.assertEqual(len(gpus.ooms().splitlines()), 2, "one start, one retry")
        gpus.cleanup()


class SleepWakeTest(unittest.TestCase):
    """vLLM's sleep mode on fake_upstream: one 8192 MiB GPU, two models of
    5000 MiB that free all of it asleep."""

    def test_an_eviction_sleeps_and_a_request_wakes_the_same_process(self):
        gpus = FakeGpus(8192)
        models = {m: ["--vram-mib", "5000"] for m in ("a", "b")}
        yaml = {m: ["    resources: {vramMiB: 5000}",
                    "    sleep: /sleep?level=1", "    wake: /wake_up"]
                for m in models}
        with manager(gpus, models, yaml) as m:
            start(m, "a")
            pid_a = m.model("a").pid
            w = WatchUntil(m, lambda e: e.model.id == "a" and
                           e.model.state == pb.MODEL_STATE_SLEEPING)
            try:
                start(m, "b")
                a = m.model("a")
                self.assertEqual(a.state, pb.MODEL_STATE_SLEEPING)
                self.assertTrue(w.wait(10), "Watch tells SLEEPING")
            finally:
                w.close()
            out = subprocess.run(
                [runfile("client/mpctl"), "--manager", "127.0.0.1:%d" % m.port, "ls"],
                capture_output=True, text=True, timeout=30, check=True).stdout
            row = {l.split()[0]: l for l in out.splitlines()[1:]}
            self.assertIn("SLEEPING", row["a"], out)
            self.assertEqual(a.pid, pid_a, "the process stays")
            pid_b = m.model("b").pid
            for model in ["a", "b", "a"]:
                self.assertEqual(start(m, model).state, READY)
            self.assertEqual(m.model("a").pid, pid_a)
            self.assertEqual(m.model("b").pid, pid_b)
            self.assertEqual(m.model("b").state, pb.MODEL_STATE_SLEEPING)
            r = m.stub().ListModels(pb.ListModelsRequest(), timeout=10)
            self.assertEqual(r.gpus[0].used_bytes, 5000 * MIB, "one awake")
            self.assertIsNotNone(m.wait_log(r"model b SLEEPING"))
            # A Stop of a sleeping model stops its process.
            m.stub().Stop(pb.StopRequest(model="b"), timeout=30)
            self.assertEqual(m.model("b").state, STOPPED)
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()


class PlacementAndFootprintTest(unittest.TestCase):
    def test_two_gpus_each_model_placed_where_most_is_free(self):
        gpus = FakeGpus(10240, 10240)
        # No --gpu: fake_upstream takes the first of CUDA_VISIBLE_DEVICES,
        # which the manager sets to the GPU it placed the model on.
        models = {m: ["--vram-mib", "6000"] for m in ("a", "b")}
        yaml = {m: ["    resources: {vramMiB: 6000, gpus: [0, 1]}"] for m in models}
        with manager(gpus, models, yaml) as m:
            start(m, "a")
            start(m, "b")
            self.assertEqual(states(m), {"a": READY, "b": READY})
            placed = {x: list(m.model(x).gpu_memory.gpus) for x in ("a", "b")}
            self.assertEqual(sorted(placed.values()), [[0], [1]])
            r = m.stub().ListModels(pb.ListModelsRequest(), timeout=10)
            self.assertEqual([g.used_bytes for g in r.gpus], [6000 * MIB, 6000 * MIB])
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()

    def test_a_footprint_is_measured_kept_and_used_at_the_next_start(self):
        gpus = FakeGpus(10240)
        models = {"a": ["--vram-mib", "3000"], "big": ["--vram-mib", "7000"]}
        yaml = {"a": ["    resources: {}"], "big": ["    resources: {vramMiB: 7000}"]}
        m = manager(gpus, models, yaml)
        m.start()
        try:
            start(m, "a")
            a = wait_for(lambda: m.model("a").gpu_memory.measured_bytes == 3000 * MIB
                         and m.model("a"))
            self.assertIsNotNone(a)
            self.assertEqual(a.gpu_memory.footprint_bytes, 3000 * MIB)
            self.assertEqual(list(a.gpu_memory.gpus), [0])
            state_file = os.path.join(os.path.dirname(m.config_path),
                                      "modelplane-footprints.json")
            saved = json.load(open(state_file))
            self.assertEqual(saved["models"]["a"]["vramBytes"], 3000 * MIB)
            # 3000 + 7000 > 9728 usable: big evicts a.
            start(m, "big")
            self.assertEqual(states(m), {"a": STOPPED, "big": READY})
        finally:
            m.proc.terminate()
            m.proc.wait(30)
        # A new manager on the same config knows a's footprint at once.
        m.start()
        try:
            a = m.model("a")
            self.assertEqual(a.gpu_memory.footprint_bytes, 3000 * MIB)
            out = m.stub().ListModels(pb.ListModelsRequest(), timeout=10)
            self.assertEqual(len(out.gpus), 1)
        finally:
            m.stop()
        self.assertEqual(gpus.ooms(), "")
        gpus.cleanup()

    def test_watch_shows_the_measured_footprint(self):
        # The READY event carries the figure measured at READY (a footprint
        # that grows after it: scheduler_memory_test).
        gpus = FakeGpus(10240)
        models = {"a": ["--vram-mib", "3000"]}
        yaml = {"a": ["    resources: {}"]}
        with manager(gpus, models, yaml) as m:
            w = WatchUntil(m, lambda e: e.model.id == "a" and
                           e.model.gpu_memory.measured_bytes == 3000 * MIB)
            try:
                start(m, "a")
                self.assertTrue(w.wait(20), [
                    (e.model.id, e.model.state, e.model.gpu_memory.measured_bytes)
                    for e in w.events])
            finally:
                w.close()
        gpus.cleanup()

    def test_a_model_larger_than_its_gpu_is_refused_with_the_reason(self):
        gpus = FakeGpus(10240)
        with manager(gpus, {"huge": ["--vram-mib", "20000"]},
                     {"huge": ["    resources: {vramMiB: 20000}"]}) as m:
            with self.assertRaises(grpc.RpcError) as e:
                start(m, "huge")
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("cannot fit", e.exception.details())
            self.assertIn("GPU 0 9728 MiB", e.exception.details())
        gpus.cleanup()

    def test_mpctl_ls_shows_footprints_and_gpus(self):
        gpus = FakeGpus(10240)
        models = {"a": ["--vram-mib", "3000"], "b": ["--vram-mib", "2000"]}
        yaml = {"a": ["    resources: {vramMiB: 3000}"], "b": ["    resources: {}"]}
        with manager(gpus, models, yaml) as m:
            start(m, "a")
            # b is not measured yet: it goes alone (a is evicted), and is
            # measured once READY.
            start(m, "b")
            self.assertIsNotNone(wait_for(
                lambda: m.model("b").gpu_memory.measured_bytes == 2000 * MIB))
            out = subprocess.run(
                [runfile("client/mpctl"), "--manager", "127.0.0.1:%d" % m.port, "ls"],
                capture_output=True, text=True, timeout=30, check=True).stdout
            lines = out.splitlines()
            self.assertEqual(lines[0].split()[7:9], ["VRAM", "GPU"], out)
            row = {l.split()[0]: l for l in lines[1:]}
            self.assertIn("3000 MiB declared", row["a"], out)
            self.assertIn("2000 MiB measured", row["b"], out)
            self.assertIn("GPU 0 (Fake GPU): 8240 MiB free of 10240 MiB", out)
        gpus.cleanup()

    def test_nvml_that_finds_no_gpu_leaves_the_features_off(self):
        gpus = FakeGpus()  # A gpus file with no GPU in it.
        with manager(gpus, {"a": ["--vram-mib", "0"]},
                     {"a": ["    resources: {vramMiB: 100}"]}) as m:
            self.assertIsNotNone(m.wait_log(r"GPU memory scheduling off \(NVML found no GPU"))
            start(m, "a")
            self.assertEqual(states(m), {"a": READY})
        gpus.cleanup()

    def test_without_nvml_the_gpu_features_are_off_and_all_else_works(self):
        models = {"a": []}
        with ManagerProcess(models, model_yaml={"a": ["    resources: {vramMiB: 100}"]},
                            env={"LD_LIBRARY_PATH": "/nonexistent"}) as m:
            self.assertIsNotNone(m.wait_log(r"GPU memory scheduling off \(no NVML"))
            start(m, "a")
            self.assertEqual(states(m), {"a": READY})
            self.assertFalse(m.model("a").HasField("gpu_memory"))


if __name__ == "__main__":
    junit.main()
