"""modelmanager end to end: the real binary serving real fake_upstream
models, called with Python grpcio the way another service would."""

import json
import os
import queue
import signal
import subprocess
import threading
import time
import unittest

import grpc

import health_pb2
import health_pb2_grpc
import reflection_pb2
import reflection_pb2_grpc
from modelplane.v1 import model_manager_pb2 as pb
from modelplane.v1 import model_manager_pb2_grpc as pb_grpc
from tests.manager.manager_proc import AcquireStream, ManagerProcess, alive
from tools.testing.fake_upstream_proc import runfile
from tools.testing import junit
from tools.testing.fake_upstream_proc import under_sanitizer, wait_for

READY = pb.MODEL_STATE_READY
STOPPED = pb.MODEL_STATE_STOPPED


class ServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess({"alpha": ["--ready-after-ms", "100"],
                                "beta": ["--tokens", "3"]})
        cls.m.start()
        cls.stub = cls.m.stub()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def setUp(self):
        self.stub.StopAll(pb.StopAllRequest(force=True), timeout=30)

    def test_list_models(self):
        resp = self.stub.ListModels(pb.ListModelsRequest(), timeout=10)
        self.assertEqual([m.id for m in resp.models], ["alpha", "beta"])
        self.assertTrue(all(m.state == STOPPED for m in resp.models))
        self.assertGreater(resp.revision, 0)
        self.assertEqual(resp.models[0].upstream_url,
                         "http://127.0.0.1:%d" % self.m.ports["alpha"])

    def test_start_then_ready_with_a_live_pid_and_healthy(self):
        model = self.stub.Start(pb.StartRequest(model="alpha"), timeout=20)
        self.assertEqual(model.state, READY)
        self.assertTrue(alive(model.pid))
        health = health_pb2_grpc.HealthStub(self.m.channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="model/alpha"), timeout=5)
        self.assertEqual(status.status, health_pb2.HealthCheckResponse.SERVING)
        status = health.Check(health_pb2.HealthCheckRequest(service="model/beta"), timeout=5)
        self.assertEqual(status.status, health_pb2.HealthCheckResponse.NOT_SERVING)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(status.status, health_pb2.HealthCheckResponse.SERVING)

    def beta_log(self):
        chunks = self.stub.StreamLogs(pb.StreamLogsRequest(
            model="beta", history_bytes=1 << 20), timeout=10)
        return b"".join(c.data for c in chunks).decode()

    def test_fifty_concurrent_starts_spawn_once(self):
        before = self.beta_log().count("listening on")
        futures = [self.stub.Start.future(pb.StartRequest(model="beta"), timeout=30)
                   for _ in range(50)]
        pids = {f.result().pid for f in futures}
        self.assertEqual(len(pids), 1)
        self.assertEqual(self.beta_log().count("listening on"), before + 1)

    def test_default_group_swaps_one_at_a_time(self):
        a = self.stub.Start(pb.StartRequest(model="alpha"), timeout=20)
        b = self.stub.Start(pb.StartRequest(model="beta"), timeout=20)
        self.assertEqual(b.state, READY)
        self.assertFalse(alive(a.pid))
        self.assertEqual(self.m.model("alpha").state, STOPPED)

    def test_wait_ready_waits_for_another_callers_start(self):
        waiting = self.stub.WaitReady.future(pb.WaitReadyRequest(model="alpha"), timeout=30)
        time.sleep(0.2)  # Let the wait register (its outcome, not timing, is checked).
        self.assertFalse(waiting.done())
        self.stub.Start(pb.StartRequest(model="alpha"), timeout=20)
        self.assertEqual(waiting.result().state, READY)

    def test_errors_have_the_documented_codes(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Start(pb.StartRequest(model="nope"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.GetModel(pb.GetModelRequest(), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.WaitReady(pb.WaitReadyRequest(model="alpha"), timeout=0.3)
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_watch_snapshot_bookmark_changes_and_resume(self):
        call = self.stub.Watch(pb.WatchRequest(), timeout=30)
        events = iter(call)
        snapshot = [next(events), next(events)]
        self.assertEqual({e.model.id for e in snapshot}, {"alpha", "beta"})
        self.assertTrue(all(e.type == pb.WatchEvent.TYPE_ADDED for e in snapshot))
        bookmark = next(events)
        self.assertEqual(bookmark.type, pb.WatchEvent.TYPE_BOOKMARK)
        self.stub.Start(pb.StartRequest(model="beta"), timeout=20)
        seen = []
        for e in events:
            self.assertGreater(e.revision, bookmark.revision)
            if e.type == pb.WatchEvent.TYPE_MODIFIED and e.model.id == "beta":
                seen.append(e.model.state)
                if e.model.state == READY:
                    break
        call.cancel()
        self.assertIn(READY, seen)
        # Resume from the bookmark: the changes since are replayed.
        call = self.stub.Watch(pb.WatchRequest(since_revision=bookmark.revision,
                                               models=["beta"]), timeout=30)
        replay = []
        for e in call:
            replay.append(e)
            if e.type == pb.WatchEvent.TYPE_BOOKMARK:
                break
        call.cancel()
        self.assertEqual(replay[-2].model.state, READY)
        # A revision from before the history is OUT_OF_RANGE.
        with self.assertRaises(grpc.RpcError) as e:
            list(self.stub.Watch(pb.WatchRequest(since_revision=1), timeout=10))
        self.assertEqual(e.exception.code(), grpc.StatusCode.OUT_OF_RANGE)

    def test_reflection_lists_the_services(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.m.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for r in responses for s in r.list_services_response.service}
        self.assertIn("modelplane.v1.ModelManager", names)
        self.assertIn("grpc.health.v1.Health", names)
        # `grpcurl describe` works for every listed service: reflection
        # finds a file descriptor for each (none is at hand on the client).
        for service in sorted(names):
            responses = list(stub.ServerReflectionInfo(iter([
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)]),
                timeout=10))
            self.assertEqual(len(responses), 1)
            self.assertFalse(responses[0].HasField("error_response"),
                             (service, responses[0].error_response))
            self.assertTrue(responses[0].file_descriptor_response.file_descriptor_proto,
                            service)

    def test_manager_log_stream(self):
        self.stub.Start(pb.StartRequest(model="alpha"), timeout=20)
        chunks = list(self.stub.StreamLogs(pb.StreamLogsRequest(
            model="manager", history_bytes=1 << 20), timeout=10))
        text = b"".join(c.data for c in chunks).decode()
        self.assertIn("model alpha READY", text)


class LeaseTest(unittest.TestCase):
    def test_held_lease_holds_off_a_swap_until_revoked_and_released(self):
        with ManagerProcess({"a": [], "b": []},
                            model_yaml={"b": ["    maxQueueWait: 1"]}) as m:
            stub = m.stub()
            holder = AcquireStream(stub, "holder")
            holder.acquire("a")
            granted = holder.wait("granted", "a")
            self.assertIsNotNone(granted)
            self.assertEqual(granted.upstream_url, "http://127.0.0.1:%d" % m.ports["a"])
            pid_a = m.model("a").pid
            self.assertEqual(m.model("a").lease_holders[0].client_id, "holder")
            other = AcquireStream(stub, "other")
            other.acquire("b")
            revoked = holder.wait("revoked", "a")  # After maxQueueWait.
            self.assertIsNotNone(revoked)
            self.assertTrue(alive(pid_a), "a must not die under a lease")
            self.assertIsNone(other.wait("granted", "b", timeout=0.5))
            holder.release("a", granted.lease_id)
            self.assertIsNotNone(other.wait("granted", "b"))
            self.assertFalse(alive(pid_a))
            holder.close()
            other.close()

    def test_streams_cancelled_as_they_open_leave_the_manager_whole(self):
        # A Watch or StreamLogs cancelled before the manager's loop took it
        # up: the stream ends, and the loop's work for it finds it ended
        # (it once ran on the freed stream and crashed the manager).
        with ManagerProcess({"a": []}) as m:
            stub = m.stub()
            deadline = time.monotonic() + 20

            def churn(i):
                # A channel of its own per thread, as separate clients.
                with grpc.insecure_channel("127.0.0.1:%d" % m.port) as ch:
                    s = pb_grpc.ModelManagerStub(ch)
                    for _ in range(1000):
                        if time.monotonic() > deadline or m.proc.poll() is not None:
                            return
                        if i % 2:
                            s.Watch(pb.WatchRequest()).cancel()
                        else:
                            s.StreamLogs(pb.StreamLogsRequest(
                                model="a", follow=True)).cancel()
            threads = [threading.Thread(target=churn, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertIsNone(m.proc.poll(), m.log())
            # The loop may still be working through the churn's thousands of
            # cancelled streams (under ASan with every test running, more
            # than 5 s): the check is that it answers, not how soon.
            self.assertEqual(len(stub.ListModels(pb.ListModelsRequest(), timeout=60).models), 1)
            # And a stream still works.
            c = stub.Watch(pb.WatchRequest())
            self.assertEqual(next(c).model.id, "a")
            c.cancel()

    def test_a_stop_whose_caller_left_finishes_without_it(self):
        # Stops wait for the lease holder; their callers give up (deadline)
        # and their calls are freed. The stop goes on, and finishing it
        # must answer no one (the manager once answered the freed calls and
        # crashed).
        with ManagerProcess({"a": []}) as m:
            stub = m.stub()
            holder = AcquireStream(stub, "holder")
            holder.acquire("a")
            granted = holder.wait("granted", "a")
            self.assertIsNotNone(granted)
            for _ in range(10):
                with self.assertRaises(grpc.RpcError) as e:
                    stub.Stop(pb.StopRequest(model="a"), timeout=0.3)
                self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            holder.release("a", granted.lease_id)
            self.assertTrue(wait_for(
                lambda: m.model("a").state == pb.MODEL_STATE_STOPPED, 20))
            self.assertIsNone(m.proc.poll(), m.log())
            self.assertEqual(len(stub.ListModels(pb.ListModelsRequest(), timeout=5).models), 1)
            holder.close()

    def test_broken_acquire_stream_releases_its_leases(self):
        with ManagerProcess({"a": [], "b": []}) as m:
            stub = m.stub()
            holder = AcquireStream(stub, "holder")
            holder.acquire("a")
            self.assertIsNotNone(holder.wait("granted", "a"))
            self.assertEqual(m.model("a").active_leases, 1)
            holder.cancel()
            self.assertTrue(wait_for(lambda: m.model("a").active_leases == 0, 10))
            other = AcquireStream(stub, "other")
            other.acquire("b")
            self.assertIsNotNone(other.wait("granted", "b"))
            other.close()

    def test_unknown_model_is_failed_not_a_broken_stream(self):
        with ManagerProcess({"a": []}) as m:
            s = AcquireStream(m.stub())
            s.acquire("ghost", request_id="x")
            failed = s.wait("failed", "ghost")
            self.assertEqual(failed.request_id, "x")
            self.assertEqual(failed.code, grpc.StatusCode.NOT_FOUND.value[0])
            s.acquire("a")
            self.assertIsNotNone(s.wait("granted", "a"))
            s.close()

    def test_failed_carries_the_failure_and_a_cancelled_acquire_is_answered(self):
        with ManagerProcess({"dies": ["--exit-immediately", "3"],
                             "slow": ["--ready-after-ms", "60000"]},
                            extra_yaml="groups:\n  g: {members: [dies, slow], "
                                       "swap: false, exclusive: false}\n") as m:
            s = AcquireStream(m.stub())
            s.acquire("dies", request_id="d")
            failed = s.wait("failed", "dies")
            self.assertEqual(failed.code, grpc.StatusCode.FAILED_PRECONDITION.value[0])
            self.assertEqual(failed.failure.reason, pb.FAILURE_REASON_EXITED_DURING_START)
            self.assertEqual(failed.failure.exit_code, 3)
            self.assertTrue(any("exiting at once" in l for l in failed.failure.last_lines),
                            failed.failure)
            # RELEASE with lease 0 cancels a pending ACQUIRE, which is told so.
            s.acquire("slow", request_id="w")
            s.wait("starting", "slow")
            s.release("slow", 0)
            cancelled = s.wait("failed", "slow")
            self.assertEqual(cancelled.request_id, "w")
            self.assertEqual(cancelled.code, grpc.StatusCode.CANCELLED.value[0])
            s.close()


class BinaryTest(unittest.TestCase):
    def test_auth_token_is_required(self):
        with ManagerProcess({"a": []}) as probe:
            token_file = os.path.join(probe.tmp.name, "token")
            with open(token_file, "w") as f:
                f.write("s3cret\n")
            m = ManagerProcess({"a": []}, flags=["--auth-token-file", token_file])
            with m:
                with self.assertRaises(grpc.RpcError) as e:
                    m.stub().ListModels(pb.ListModelsRequest(), timeout=5)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                resp = m.stub().ListModels(pb.ListModelsRequest(), timeout=5,
                                           metadata=[("authorization", "Bearer s3cret")])
                self.assertEqual(len(resp.models), 1)
                health = health_pb2_grpc.HealthStub(m.channel)  # Not covered.
                self.assertEqual(health.Check(health_pb2.HealthCheckRequest(), timeout=5).status,
                                 health_pb2.HealthCheckResponse.SERVING)

    def test_sigterm_leaves_no_process(self):
        m = ManagerProcess({"a": ["--ignore-sigterm", "--fork-child"]},
                           model_yaml={"a": ["    unloadTimeout: 1"]})
        m.start()
        pid = m.stub().Start(pb.StartRequest(model="a"), timeout=20).pid
        self.assertTrue(alive(pid))
        m.proc.send_signal(signal.SIGTERM)
        self.assertEqual(m.proc.wait(30), 0)
        self.assertFalse(alive(pid))
        self.assertTrue(any("shutting down" in l for l in m.log()))
        m.stop()

    def test_followed_logs_end_with_not_found_on_removal_and_unavailable_at_shutdown(self):
        with ManagerProcess({"a": ["--log-every-ms", "20"], "b": [],
                             "keep": ["--log-every-ms", "20"]},
                            extra_yaml="groups:\n  all: {members: [a, b, keep], "
                                       "swap: false, exclusive: false}\n") as m:
            stub = m.stub()
            stub.Start(pb.StartRequest(model="a"), timeout=20)
            stub.Start(pb.StartRequest(model="keep"), timeout=20)
            removed = stub.StreamLogs(pb.StreamLogsRequest(model="a", follow=True),
                                      timeout=60)
            kept = stub.StreamLogs(pb.StreamLogsRequest(model="keep", follow=True),
                                   timeout=60)
            first = next(removed)
            self.assertIn(b"progress line", first.data + next(removed).data)
            m.write_config(models={"b": [], "keep": ["--log-every-ms", "20"]},
                           extra_yaml="groups:\n  all: {members: [b, keep], "
                                      "swap: false, exclusive: false}\n")
            stub.ReloadConfig(pb.ReloadConfigRequest(), timeout=20)
            with self.assertRaises(grpc.RpcError) as e:
                for _ in removed:
                    pass
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertIn(b"progress line", next(kept).data)
            m.proc.send_signal(signal.SIGTERM)
            data = b""
            with self.assertRaises(grpc.RpcError) as e:
                for chunk in kept:
                    data += chunk.data
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(m.proc.wait(30), 0)

    def test_sighup_reload_keeps_an_unchanged_model_running(self):
        with ManagerProcess({"a": [], "b": []}) as m:
            stub = m.stub()
            pid = stub.Start(pb.StartRequest(model="a"), timeout=20).pid
            m.write_config(models={"a": [], "c": []},
                           model_yaml={"a": ["    ttl: 600"]})
            m.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: any("reloaded" in l for l in m.log()), 10),
                            m.log())
            ids = [x.id for x in stub.ListModels(pb.ListModelsRequest(), timeout=5).models]
            self.assertEqual(ids, ["a", "c"])
            a = m.model("a")
            self.assertEqual(a.pid, pid)
            self.assertEqual(a.state, READY)
            self.assertEqual(a.ttl.seconds, 600)

    def test_watch_config_reloads_on_a_file_change(self):
        with ManagerProcess({"a": []}, flags=["--watch-config"]) as m:
            m.write_config(models={"a": [], "b": []})
            self.assertTrue(wait_for(lambda: len(m.stub().ListModels(
                pb.ListModelsRequest(), timeout=5).models) == 2, 15), m.log())

    def test_preload_and_unix_socket_and_json_logs(self):
        m = ManagerProcess({"a": [], "b": []}, extra_yaml=(
            "hooks:\n  on_startup:\n    preload: [b]\n"),
            flags=["--log-format", "json"])
        sock = os.path.join(m.tmp.name, "mm.sock")
        m.flags += ["--listen", "unix:" + sock]
        m.proc = subprocess.Popen(
            [runfile("server/modelmanager"), "--config", m.config_path] + m.flags,
            stderr=subprocess.PIPE, text=True)
        try:
            # Every line is JSON; "listening" comes after what the start
            # found (GPUs, NVML or not).
            entries = []
            while not entries or "listening" not in entries[-1]["msg"]:
                entries.append(json.loads(m.proc.stderr.readline()))
                self.assertLess(len(entries), 10, entries)
            entry = entries[-1]
            self.assertEqual(entry["level"], "info")
            self.assertIn("listening on unix:" + sock, entry["msg"])
            self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
            channel = grpc.insecure_channel("unix:" + sock)
            stub = pb_grpc.ModelManagerStub(channel)
            self.assertTrue(wait_for(lambda: stub.GetModel(
                pb.GetModelRequest(model="b"), timeout=5).state == READY, 15))
            self.assertEqual(stub.GetModel(pb.GetModelRequest(model="a"),
                                           timeout=5).state, STOPPED)
        finally:
            m.proc.send_signal(signal.SIGTERM)
            m.proc.wait(30)
            m.tmp.cleanup()
        self.assertFalse(os.path.exists(sock))

    def test_tls(self):
        with ManagerProcess({"a": []}) as probe:
            d = probe.tmp.name
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", d + "/key.pem", "-out", d + "/cert.pem", "-days", "1",
                 "-subj", "/CN=localhost", "-addext",
                 "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                check=True, capture_output=True, timeout=60)
            with open(d + "/cert.pem", "rb") as f:
                cert = f.read()
            with ManagerProcess({"a": []}, flags=["--tls-cert", d + "/cert.pem",
                                                  "--tls-key", d + "/key.pem"]) as m:
                with self.assertRaises(grpc.RpcError):
                    m.stub().ListModels(pb.ListModelsRequest(), timeout=3)
                channel = grpc.secure_channel(
                    "localhost:%d" % m.port,
                    grpc.ssl_channel_credentials(root_certificates=cert))
                resp = pb_grpc.ModelManagerStub(channel).ListModels(
                    pb.ListModelsRequest(), timeout=10)
                self.assertEqual([x.id for x in resp.models], ["a"])

    def test_debug_log_carries_the_models_output(self):
        with ManagerProcess({"a": []}, flags=["--log-level", "debug"]) as m:
            m.stub().Start(pb.StartRequest(model="a"), timeout=20)
            self.assertTrue(m.wait_log(r"debug \[a\] listening on 127\.0\.0\.1:"),
                            m.log())

    def test_log_to_stdout_upstream_logs_the_models_output(self):
        # llama-swap's logToStdout: upstream (or both) prints what models print.
        # As "output" lines, which every log level shows (llama-swap's
        # upstream output does not depend on logLevel).
        with ManagerProcess({"a": []}, extra_yaml="logToStdout: upstream\n") as m:
            m.stub().Start(pb.StartRequest(model="a"), timeout=20)
            self.assertTrue(m.wait_log(r"output \[a\] listening on 127\.0\.0\.1:"),
                            m.log())
        with ManagerProcess({"a": []}) as m:  # proxy, the default: not at info.
            m.stub().Start(pb.StartRequest(model="a"), timeout=20)
            m.stub().Stop(pb.StopRequest(model="a"), timeout=20)
            self.assertFalse([l for l in m.log() if "[a] listening on" in l], m.log())

    def test_config_dir_files_merge_and_a_new_one_arrives_with_a_reload(self):
        # llama-swap's -config-dir: every *.yml/*.yaml in it, after --config.
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            fake = runfile("tools/fake_upstream/fake_upstream")
            with open(os.path.join(d, "10-extra.yaml"), "w") as f:
                f.write("models:\n  extra:\n    cmd: %s --port ${PORT}\n" % fake)
            with ManagerProcess({"a": []}, flags=["--config-dir", d]) as m:
                ids = lambda: [x.id for x in m.stub().ListModels(
                    pb.ListModelsRequest(), timeout=10).models]
                self.assertEqual(ids(), ["a", "extra"])
                with open(os.path.join(d, "20-more.yml"), "w") as f:
                    f.write("models:\n  more:\n    cmd: %s --port ${PORT}\n" % fake)
                m.stub().ReloadConfig(pb.ReloadConfigRequest(), timeout=10)
                self.assertEqual(ids(), ["a", "extra", "more"])
                self.assertEqual(m.stub().Start(pb.StartRequest(model="more"),
                                                timeout=20).state, pb.MODEL_STATE_READY)
                # A model defined twice: the reload is refused, naming both.
                with open(os.path.join(d, "30-dup.yaml"), "w") as f:
                    f.write("models:\n  a:\n    cmd: %s --port ${PORT}\n" % fake)
                with self.assertRaises(grpc.RpcError) as e:
                    m.stub().ReloadConfig(pb.ReloadConfigRequest(), timeout=10)
                self.assertIn("30-dup.yaml:2:3: models.a: defined again (first at ",
                              e.exception.details())
                self.assertEqual(ids(), ["a", "extra", "more"])

    def test_reload_rpc_rejects_an_invalid_file_and_keeps_the_old_one(self):
        with ManagerProcess({"a": []}) as m:
            with open(m.config_path, "w") as f:
                f.write("models:\n  a:\n    ttl: soon\n")
            with self.assertRaises(grpc.RpcError) as e:
                m.stub().ReloadConfig(pb.ReloadConfigRequest(), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("config.yaml:2:3: models.a: missing required key 'cmd'",
                          e.exception.details())
            self.assertEqual(len(m.stub().ListModels(pb.ListModelsRequest(),
                                                     timeout=5).models), 1)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


class StreamLimitTest(unittest.TestCase):
    def open_watches(self, stub, n):
        """n Watch streams, each past its first event (open on the server)."""
        calls = [stub.Watch(pb.WatchRequest()) for _ in range(n)]
        for c in calls:
            next(c)
        return calls

    def test_streams_past_the_limits_are_refused_and_counted(self):
        with ManagerProcess({"a": []}, flags=["--max-streams-per-peer", "20",
                                              "--max-streams", "30"]) as m:
            stub = m.stub()
            calls = self.open_watches(stub, 20)
            # The 21st from this address, a Watch or a StreamLogs: refused.
            with self.assertRaises(grpc.RpcError) as e:
                next(stub.Watch(pb.WatchRequest()))
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("too many streams: 20 streams are open from ipv4:127.0.0.1 "
                          "(--max-streams-per-peer 20)", e.exception.details())
            with self.assertRaises(grpc.RpcError) as e:
                next(stub.StreamLogs(pb.StreamLogsRequest(model="a", follow=True)))
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertTrue(m.wait_log(r"warn refused a Watch stream: 20 streams are open "
                                       r"from ipv4:127\.0\.0\.1 .*; 1 refused so far"),
                            m.log())
            # Acquire streams count too.
            acq = AcquireStream(stub)
            acq.acquire("a")
            self.assertTrue(wait_for(lambda: acq.error is not None, 10))
            self.assertEqual(acq.error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            # Unary calls are not streams: still served.
            self.assertEqual(len(stub.ListModels(pb.ListModelsRequest(), timeout=5).models), 1)
            # A closed stream gives its place back.
            calls.pop().cancel()
            self.assertTrue(wait_for(lambda: self._opens(stub), 10))
            for c in calls:
                c.cancel()
        with ManagerProcess({"a": []}, flags=["--max-streams-per-peer", "100",
                                              "--max-streams", "10"]) as m:
            stub = m.stub()
            calls = self.open_watches(stub, 10)
            with self.assertRaises(grpc.RpcError) as e:
                next(stub.Watch(pb.WatchRequest()))
            self.assertIn("10 streams are open (--max-streams 10)", e.exception.details())
            for c in calls:
                c.cancel()

    def test_waiting_calls_count_under_the_limits(self):
        with ManagerProcess({"a": []}, flags=["--max-streams-per-peer", "20"]) as m:
            stub = m.stub()
            # WaitReady on a model nobody starts: each waits (for 60 s).
            def wait():
                return stub.WaitReady.future(pb.WaitReadyRequest(model="a"), timeout=60)
            waits = [wait() for _ in range(20)]

            def full():
                # A probe that arrived before the last waits took a place
                # for a moment, and such a wait was refused: it goes again.
                for i, w in enumerate(waits):
                    if w.done():
                        self.assertEqual(w.exception().code(),
                                         grpc.StatusCode.RESOURCE_EXHAUSTED)
                        waits[i] = wait()
                return self._refused(stub)
            self.assertTrue(wait_for(full, 10))
            with self.assertRaises(grpc.RpcError) as e:
                stub.WaitReady(pb.WaitReadyRequest(model="a"), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("too many streams: 20 streams are open from ipv4:127.0.0.1",
                          e.exception.details())
            for w in waits:
                w.cancel()

    def _refused(self, stub):
        try:
            c = stub.Watch(pb.WatchRequest())
            next(c)
            c.cancel()
            return False
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    def test_acquire_names_are_bounded_and_events_list_64_holders(self):
        with ManagerProcess({"a": []}) as m:
            stub = m.stub()
            stub.Start(pb.StartRequest(model="a"), timeout=20)
            big = AcquireStream(stub, client_id="x" * 300)
            self.assertTrue(wait_for(lambda: big.error is not None, 10))
            self.assertEqual(big.error.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("hello.client_id is 300 bytes, over 256", big.error.details())
            holders = [AcquireStream(stub, client_id="holder-%d" % i) for i in range(70)]
            for h in holders:
                h.acquire("a")
            self.assertTrue(all(h.wait("granted", "a") for h in holders))
            self.assertTrue(wait_for(lambda: m.model("a").active_leases == 70, 10))
            self.assertEqual(len(m.model("a").lease_holders), 64)
            for h in holders:
                h.close()

    def test_a_second_manager_cannot_take_the_same_address(self):
        with ManagerProcess({"a": []}) as m:
            second = subprocess.run(
                [runfile("server/modelmanager"), "--config", m.config_path,
                 "--listen", "127.0.0.1:%d" % m.port],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(second.returncode, 1, second.stderr)
            self.assertIn("cannot listen on 127.0.0.1:%d" % m.port, second.stderr)

    def _opens(self, stub):
        try:
            c = stub.Watch(pb.WatchRequest())
            next(c)
            c.cancel()
            return True
        except grpc.RpcError:
            return False

    def test_health_watch_and_reflection_streams_are_bounded(self):
        # The health service is the manager's own: its Watch streams count
        # under the same limits (and follow the model's readiness).
        # Reflection (a thread per stream in gRPC) is capped by threads.
        with ManagerProcess({"a": []}, flags=["--max-streams-per-peer", "20"]) as m:
            health = health_pb2_grpc.HealthStub(m.channel)
            w = health.Watch(health_pb2.HealthCheckRequest(service="model/a"))
            self.assertEqual(next(w).status, health_pb2.HealthCheckResponse.NOT_SERVING)
            m.stub().Start(pb.StartRequest(model="a"), timeout=20)
            self.assertEqual(next(w).status, health_pb2.HealthCheckResponse.SERVING)
            unknown = health.Watch(health_pb2.HealthCheckRequest(service="nope"))
            self.assertEqual(next(unknown).status,
                             health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            with self.assertRaises(grpc.RpcError) as e:
                health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            for call in (lambda r: health.Check(r, timeout=5),
                         lambda r: next(health.Watch(r, timeout=5))):
                with self.assertRaises(grpc.RpcError) as e:
                    call(health_pb2.HealthCheckRequest(service="x" * 5000))
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertNotIn("xxxx", e.exception.details())
            more = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(18)]
            for c in more:
                self.assertEqual(next(c).status, health_pb2.HealthCheckResponse.SERVING)
            with self.assertRaises(grpc.RpcError) as e:
                next(health.Watch(health_pb2.HealthCheckRequest()))
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("--max-streams-per-peer 20", e.exception.details())
            for c in [w, unknown] + more:
                c.cancel()
            # A closed one gives its place back; checks are no streams.
            self.assertTrue(wait_for(lambda: self._health_opens(health), 10))
            # Reflection streams past the thread cap: refused, not a thread
            # each.
            stub = reflection_pb2_grpc.ServerReflectionStub(m.channel)
            held, refused = [], 0
            for _ in range(60):
                q = queue.Queue()
                q.put(reflection_pb2.ServerReflectionRequest(list_services=""))
                call = stub.ServerReflectionInfo(iter(q.get, None))
                held.append((call, q))
                try:
                    next(call)
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                    refused += 1
            self.assertGreater(refused, 0)
            self.assertLess(threads(m.proc.pid), 100)
            for call, q in held:
                q.put(None)
                call.cancel()

    def _health_opens(self, health):
        try:
            c = health.Watch(health_pb2.HealthCheckRequest())
            next(c)
            c.cancel()
            return True
        except grpc.RpcError:
            return False

    @unittest.skipIf(under_sanitizer(), "RSS under ASan is its allocator's")
    def test_memory_goes_back_after_thousands_of_streams_close(self):
        with ManagerProcess({"a": []}, flags=["--max-streams-per-peer", "5000",
                                              "--max-streams", "5000"]) as m:
            stub = m.stub()
            pid = m.proc.pid
            # A first burst warms what gRPC keeps for good (threads, pools).
            for c in self.open_watches(stub, 3000):
                c.cancel()
            self.assertTrue(wait_for(lambda: rss_kib(pid) < 60000, 20), rss_kib(pid))
            base = rss_kib(pid)
            calls = self.open_watches(stub, 3000)
            peak = rss_kib(pid)
            self.assertGreater(peak - base, 20000)  # ~17 KB a stream.
            for c in calls:
                c.cancel()
            # Back near where it was: at most a fifth of what they took.
            limit = base + (peak - base) // 5
            self.assertTrue(wait_for(lambda: rss_kib(pid) <= limit, 20),
                            "RSS %d KiB after closing, %d before opening, %d open"
                            % (rss_kib(pid), base, peak))


if __name__ == "__main__":
    junit.main()
