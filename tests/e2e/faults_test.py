"""System-level faults, the binaries started as processes: kill -9 the
manager while a stream runs, kill -9 the proxy while it holds a lease."""

import os
import signal
import socket
import subprocess
import json
import unittest

from tests.manager.manager_proc import ManagerProcess, alive
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

from modelplane.v1 import model_manager_pb2 as pb


def open_stream(port, model):
    """Sends a streaming chat completion over HTTP/1.1; returns the socket
    and what was read once the second token arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = json.dumps({"model": model, "stream": True, "messages": []}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"tok1" not in got:
        part = s.recv(4096)
        if not part:
            raise AssertionError("stream ended early: %r" % got)
        got += part
    return s, got


def read_to_end(s):
    got = b""
    while True:
        try:
            part = s.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        got += part
    return got


class FaultsTest(unittest.TestCase):
    def test_kill_9_manager_mid_stream(self):
        m = ManagerProcess({"s": ["--tokens", "400", "--tokens-per-second", "20"]})
        m.start()
        p = ProxyProcess(m.port, workers=1)
        again = None
        try:
            self.assertTrue(wait_for(lambda: b'"s"' in p.request("GET", "/v1/models")[2], 10))
            s, head = open_stream(p.port, "s")
            pid = m.model("s").pid
            self.assertTrue(alive(pid))
            port = m.port
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait(10)
            # The model process goes with its manager (its supervisor sees
            # the manager die), so the stream breaks: no final chunk, no
            # [DONE], never a clean end.
            rest = read_to_end(s)
            s.close()
            body = head + rest
            self.assertNotIn(b"data: [DONE]", body)
            self.assertFalse(body.endswith(b"0\r\n\r\n"), body[-200:])
            # It says why first: an SSE error event.
            self.assertIn(b'data: {"error":', body)
            self.assertTrue(wait_for(lambda: not alive(pid), 10))
            # New requests fail fast with 503 (a hang would raise a timeout)
            # once the proxy has seen its stream to the manager break; until
            # then its lease still names the dead upstream: 502.
            answers = []

            def answer():
                status, _, err = p.request("POST", "/v1/chat/completions",
                                           {"model": "s", "messages": []}, timeout=10)
                answers.append((status, err))
                return status == 503
            self.assertTrue(wait_for(answer, 10), answers)
            self.assertTrue(all(a[0] in (502, 503) for a in answers), answers)
            # The proxy says so, once (not once per reconnect attempt).
            self.assertTrue(p.wait_log(r"lost the model manager at 127\.0\.0\.1:%d" % port, 10),
                            p.log())
            # A manager restarted on the same address serves again.
            again = subprocess.Popen(
                [runfile("server/modelmanager"), "--config", m.config_path,
                 "--listen", "127.0.0.1:%d" % port], stderr=subprocess.DEVNULL)
            self.assertTrue(wait_for(lambda: p.request(
                "POST", "/v1/chat/completions",
                {"model": "s", "messages": [], "max_tokens": 2})[0] == 200, 30))
            self.assertEqual(
                sum("lost the model manager" in line for line in p.log()), 1, p.log())
            self.assertEqual(
                sum("connected to the model manager" in line for line in p.log()), 2,
                p.log())
        finally:
            p.stop()
            if again is not None:
                again.send_signal(signal.SIGTERM)
                self.assertEqual(again.wait(30), 0)
            m.stop()
        # Nothing left: no fake_upstream of this test still runs.
        self.assertTrue(wait_for(lambda: not self.upstreams(m.ports["s"]), 10))

    def test_kill_9_proxy_releases_its_lease_and_ttl_proceeds(self):
        with ManagerProcess({"t": ["--tokens", "400", "--tokens-per-second", "20"]},
                            model_yaml={"t": ["    ttl: 1"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            self.assertTrue(wait_for(lambda: b'"t"' in p.request("GET", "/v1/models")[2], 10))
            s, _ = open_stream(p.port, "t")
            self.assertEqual(m.model("t").active_leases, 1)
            p.proc.kill()
            p.proc.wait(10)
            s.close()
            # The manager sees the Acquire stream break: the lease is gone...
            self.assertTrue(wait_for(lambda: m.model("t").active_leases == 0, 20))
            # ...and the TTL runs out: the model is unloaded.
            self.assertTrue(wait_for(
                lambda: m.model("t").state == pb.MODEL_STATE_STOPPED, 20))

    @staticmethod
    def upstreams(port):
        """Live fake_upstream processes listening on `port`."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if (any(a.endswith(b"fake_upstream") for a in args)
                    and b"--port" in args and str(port).encode() in args
                    and alive(int(pid))):
                found.append(int(pid))
        return found


if __name__ == "__main__":
    junit.main()
