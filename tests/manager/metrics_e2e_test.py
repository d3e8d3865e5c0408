"""modelmanager --metrics-listen: its /metrics, parsed by Prometheus's own
parser (Debian's python3-prometheus-client), after starts, a swap, a stop,
a crash, a TTL, reloads and a Watch client."""

import os
import threading
import time
import unittest
import urllib.error
import urllib.request

from tests.manager.manager_proc import ManagerProcess, free_port, scrape, value
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

from modelplane.v1 import model_manager_pb2 as pb


class ManagerMetricsTest(unittest.TestCase):
    def test_metrics_follow_what_the_manager_does(self):
        port = free_port()
        with ManagerProcess(
                {"a": ["--ready-after-ms", "200"], "b": [],
                 "crashy": ["--crash-after-ms", "1000"], "idle": []},
                model_yaml={"idle": ["    ttl: 1"]},
                extra_yaml="groups:\n  g: {swap: true, members: [a, b]}\n"
                           "  c: {swap: false, exclusive: false, members: [crashy, idle]}\n",
                flags=["--metrics-listen", "127.0.0.1:%d" % port]) as m:
            self.assertTrue(m.wait_log(r"metrics on http://127\.0\.0\.1:%d/metrics" % port))
            stub = m.stub()
            s = scrape(port)
            self.assertEqual(value(s, "modelmanager_model_state", model="a", state="stopped"), 1)
            self.assertEqual(value(s, "modelmanager_model_state", model="a", state="ready"), 0)
            # a starts; b's start evicts it (a swap); b is stopped by hand.
            stub.Start(pb.StartRequest(model="a"), timeout=30)
            stub.Start(pb.StartRequest(model="b"), timeout=30)
            stub.Stop(pb.StopRequest(model="b"), timeout=30)
            # idle stops on its own after its TTL; crashy crashes once ready.
            stub.Start(pb.StartRequest(model="idle"), timeout=30)
            stub.Start(pb.StartRequest(model="crashy"), timeout=30)
            self.assertTrue(wait_for(lambda: m.model("idle").state == pb.MODEL_STATE_STOPPED
                                     and m.model("crashy").state == pb.MODEL_STATE_FAILED, 20))
            # A Watch client, held open.
            call = stub.Watch(pb.WatchRequest(), timeout=60)
            next(call)
            # A reload that fails, one that works.
            with open(m.config_path) as f:
                good = f.read()
            with open(m.config_path, "w") as f:
                f.write("models: [this is not a mapping\n")
            with self.assertRaises(Exception):
                stub.ReloadConfig(pb.ReloadConfigRequest(), timeout=10)
            with open(m.config_path, "w") as f:
                f.write(good)
            stub.ReloadConfig(pb.ReloadConfigRequest(), timeout=10)

            s = scrape(port)
            self.assertEqual(value(s, "modelmanager_model_state", model="a", state="stopped"), 1)
            self.assertEqual(value(s, "modelmanager_model_starts_total", model="a"), 1)
            self.assertEqual(value(s, "modelmanager_model_starts_total", model="b"), 1)
            self.assertEqual(value(s, "modelmanager_model_stops_total", model="a", cause="swap"), 1)
            self.assertEqual(value(s, "modelmanager_model_stops_total", model="b",
                                   cause="requested"), 1)
            self.assertEqual(value(s, "modelmanager_model_stops_total", model="idle",
                                   cause="ttl"), 1)
            self.assertEqual(value(s, "modelmanager_model_failures_total", model="crashy",
                                   reason="crashed"), 1)
            self.assertEqual(value(s, "modelmanager_model_evictions_total", model="a"), 1)
            self.assertEqual(value(s, "modelmanager_model_swaps_total", model="b"), 1)
            self.assertEqual(value(s, "modelmanager_model_start_duration_seconds_count",
                                   model="a"), 1)
            # a is ready after 200 ms: in the 0.25 s bucket or above, not 0.1.
            self.assertEqual(value(s, "modelmanager_model_start_duration_seconds_bucket",
                                   model="a", le="0.1"), 0)
            self.assertGreaterEqual(value(s, "modelmanager_model_start_duration_seconds_sum",
                                          model="a"), 0.2)
            self.assertEqual(value(s, "modelmanager_watch_clients"), 1)
            self.assertEqual(value(s, "modelmanager_reloads_total", result="ok"), 1)
            self.assertEqual(value(s, "modelmanager_reloads_total", result="error"), 1)
            self.assertEqual(value(s, "modelmanager_model_queued_requests", model="a"), 0)
            self.assertEqual(value(s, "modelmanager_model_lease_holders", model="a"), 0)
            call.cancel()
            self.assertTrue(wait_for(
                lambda: value(scrape(port), "modelmanager_watch_clients") == 0, 10))
            # Other paths and methods.
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10)
            self.assertEqual(e.exception.code, 404)

    def test_a_taken_metrics_port_is_an_error(self):
        with ManagerProcess({"a": []}, flags=["--metrics-listen", "127.0.0.1:0"]) as m:
            line = m.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
            taken = int(line.rsplit(":", 1)[1].split("/")[0])
            other = ManagerProcess({"a": []},
                                   flags=["--metrics-listen", "127.0.0.1:%d" % taken])
            with self.assertRaises(RuntimeError):
                other.start()
            other.proc.wait(10)
            self.assertEqual(other.proc.returncode, 1)
            self.assertTrue(any("cannot listen on 127.0.0.1:%d" % taken in l
                                for l in other.log()), other.log())


if __name__ == "__main__":
    junit.main()
