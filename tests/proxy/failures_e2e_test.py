"""What a client that fails, or leaves, can make the system do: real
modelmanager, modelproxy and models, real sockets.

- A start known to fail (its binary is missing, or it failed moments ago)
  evicts nothing: an SDK retrying a 503 cannot tear down the model that works.
- A request whose client left is withdrawn at once: nothing is started or
  evicted for it, and the proxy's queue gauge drops with it.
"""

import json
import os
import re
import socket
import threading
import unittest

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

READY = pb.MODEL_STATE_READY


def queued(proxy, model):
    """modelproxy_queued{model=...} from /metrics, every node's (0 when
    absent)."""
    text = proxy.request("GET", "/metrics")[2].decode()
    found = re.findall(r'^modelproxy_queued\{model="%s"(?:,[^}]*)?\} (\S+)$'
                       % re.escape(model), text, re.M)
    return sum(float(v) for v in found)


def status_value(proxy, model):
    data = json.loads(proxy.request("GET", "/v1/models")[2])["data"]
    return next(m["status"]["value"] for m in data if m["id"] == model)


def chat(model, stream=False):
    return {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}


def send_and_leave(port, model):
    """A whole request, then the client hangs up without reading."""
    body = json.dumps(chat(model)).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    s.close()


class StartFailureTest(unittest.TestCase):
    """good, typo (a missing binary) and broken (exits at once) share the
    default group: one model at a time."""

    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess({"good": [], "broken": ["--exit-immediately", "3"]})
        # An executable script whose interpreter is not there: exec fails
        # as surely as for a missing binary.
        script = os.path.join(cls.m.tmp.name, "badinterp")
        with open(script, "w") as f:
            f.write("#!/nonexistent/interp\n")
        os.chmod(script, 0o755)
        text = cls.m.config_text() + (
            "  typo:\n"
            "    cmd: /usr/local/bin/fake_upstrem --port ${PORT}\n"
            "    proxy: http://127.0.0.1:${PORT}\n"
            "  badinterp:\n"
            "    cmd: %s --port ${PORT}\n"
            "    proxy: http://127.0.0.1:${PORT}\n" % script)
        with open(cls.m.config_path, "w") as f:
            f.write(text)
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port)
        assert wait_for(lambda: cls.p.request("GET", "/v1/models")[2].count(b'"id"') == 4, 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()

    def serve_good(self):
        got = self.p.request("POST", "/v1/chat/completions", chat("good"))
        self.assertEqual(got[0], 200, got)
        return self.m.model("good").pid

    def test_a_missing_binary_fails_without_evicting_the_model_that_works(self):
        pid = self.serve_good()
        for attempt in range(3):  # An SDK retrying its 503s.
            status, _, body = self.p.request("POST", "/v1/chat/completions",
                                             chat("typo"))
            self.assertEqual(status, 503, body)
            message = json.loads(body)["error"]["message"]
            self.assertIn("/usr/local/bin/fake_upstrem", message)
            self.assertIn("spawn error", message)
            if attempt > 0:
                self.assertIn("not tried again for", message)
        good = self.m.model("good")
        self.assertEqual((good.state, good.pid), (READY, pid))
        typo = self.m.model("typo")
        self.assertEqual(typo.state, pb.MODEL_STATE_FAILED)
        self.assertEqual(typo.failure.reason, pb.FAILURE_REASON_SPAWN_ERROR)
        # /v1/models says why its requests fail.
        self.assertTrue(wait_for(lambda: status_value(self.p, "typo") == "failed", 10))
        self.assertEqual(status_value(self.p, "good"), "loaded")

    def test_a_script_whose_interpreter_is_missing_evicts_nothing(self):
        pid = self.serve_good()
        status, _, body = self.p.request("POST", "/v1/chat/completions",
                                         chat("badinterp"))
        self.assertEqual(status, 503, body)
        self.assertIn("its interpreter /nonexistent/interp", body.decode())
        good = self.m.model("good")
        self.assertEqual((good.state, good.pid), (READY, pid))

    def test_a_failed_start_backs_off_before_it_may_evict_again(self):
        self.serve_good()
        # The first start cannot be known to fail: it evicts good.
        status, _, body = self.p.request("POST", "/v1/chat/completions",
                                         chat("broken"))
        self.assertEqual(status, 503, body)
        self.assertIn("exit code 3", body.decode())
        pid = self.serve_good()
        # Retries within the back-off fail at once and leave good alone.
        for _ in range(3):
            status, _, body = self.p.request("POST", "/v1/chat/completions",
                                             chat("broken"))
            self.assertEqual(status, 503, body)
            self.assertIn("not tried again for", body.decode())
            self.assertIn("exit code 3", body.decode())
        good = self.m.model("good")
        self.assertEqual((good.state, good.pid), (READY, pid))


class AbandonedRequestTest(unittest.TestCase):
    def test_requests_whose_clients_left_force_no_swap(self):
        # a streams for ~8 s under its lease; b (same default group) would
        # revoke it after maxQueueWait (1 s) if its demand stayed.
        with ManagerProcess({"a": ["--tokens", "160", "--tokens-per-second", "20"],
                             "b": []},
                            model_yaml={"b": ["    maxQueueWait: 1"]}) as m:
            p = ProxyProcess(m.port, flags=["--access-log"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                stream = {}

                def hold_a():
                    stream["got"] = p.request("POST", "/v1/chat/completions",
                                              chat("a", stream=True), timeout=60)
                holder = threading.Thread(target=hold_a)
                holder.start()
                self.assertTrue(wait_for(lambda: m.model("a").state == READY, 20))
                pid = m.model("a").pid
                for _ in range(300):
                    send_and_leave(p.port, "b")
                # Withdrawn at once: the gauge drops, the manager's queue is
                # empty, and each left request is logged as 499 now.
                self.assertTrue(wait_for(lambda: queued(p, "b") == 0, 10),
                                queued(p, "b"))
                self.assertTrue(wait_for(lambda: m.model("b").queued_requests == 0, 10))
                self.assertTrue(wait_for(
                    lambda: sum(1 for l in p.log() if '" 499 ' in l and "model=b" in l) == 300,
                    10))
                # Well past b's maxQueueWait: a was never revoked.
                holder.join(60)
                status, _, body = stream["got"]
                self.assertEqual(status, 200)
                self.assertTrue(body.endswith(b"data: [DONE]\n\n"), body[-200:])
                self.assertEqual(body.count(b'"content":"tok'), 160)
                a = m.model("a")
                self.assertEqual((a.state, a.pid), (READY, pid))
                self.assertEqual(m.model("b").state, pb.MODEL_STATE_STOPPED)
            finally:
                p.stop()

    def test_a_start_nobody_waits_for_is_cancelled(self):
        with ManagerProcess({"slow": ["--ready-after-ms", "4000"]}) as m:
            p = ProxyProcess(m.port)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                send_and_leave(p.port, "slow")
                # Its only client left: the start is called off (or never
                # made, if the proxy saw the client go first). It would be
                # READY 4 s after its spawn; it never is.
                self.assertTrue(wait_for(lambda: queued(p, "slow") == 0, 10))
                self.assertIsNone(wait_for(
                    lambda: m.model("slow").state == READY, 6))
                self.assertEqual(m.model("slow").state, pb.MODEL_STATE_STOPPED)
                self.assertEqual(m.model("slow").pid, 0)
            finally:
                p.stop()


if __name__ == "__main__":
    junit.main()
