"""modelproxy over HTTP/2 cleartext, end to end: the real manager and proxy
binaries, fake_upstream models, and real HTTP/2 clients: curl (prior
knowledge and Upgrade: h2c), nghttp, and the h2 library for what needs
frames (multiplexing, RST_STREAM, rapid-reset floods, GOAWAY)."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import h2.config
import h2.connection
import h2.errors
import h2.events

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

from modelplane.v1 import model_manager_pb2 as pb


def sse_text(body):
    text = ""
    for event in body.decode().split("\n\n"):
        if event.startswith("data: {"):
            chunk = json.loads(event[6:])
            choice = chunk["choices"][0] if chunk["choices"] else {}
            text += choice.get("delta", {}).get("content", "") or choice.get("text", "")
    return text


def tokens(n):
    return "".join("tok%d " % i for i in range(n))


def upstream_stats(port):
    out = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/stats" % port],
                         capture_output=True, check=True, timeout=10).stdout
    return json.loads(out)


class H2Client:
    """An HTTP/2 client on one connection (prior knowledge)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.goaway = None
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"),
                   (":authority", "127.0.0.1")]
        if body is not None:
            headers.append(("content-type", "application/json"))
        self.conn.send_headers(sid, headers, end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(sid, json.dumps(body).encode(), end_stream=end)
        self.flush()
        self.streams[sid] = {"headers": None, "data": b"", "ended": False, "reset": None}
        return sid

    def reset(self, sid):
        self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def pump(self, until, timeout=30):
        deadline = time.monotonic() + timeout
        while not until():
            if self.closed or time.monotonic() > deadline:
                return False
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                continue
            for ev in self.conn.receive_data(data):
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    s["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    s["data"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                        ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    if s is not None:
                        s["reset"] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev
            self.flush()
        return True

    def done(self, sid):
        s = self.streams[sid]
        return s["ended"] or s["reset"] is not None

    def close(self):
        self.sock.close()


def chat(model, stream=True):
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


class Http2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess(
            {"alpha": ["--tokens", "5"],
             "slow": ["--tokens", "40", "--tokens-per-second", "40"]},
            model_yaml={"alpha": ["    aliases: [gpt-4o-mini]"]},
            extra_yaml="groups:\n  g: {members: [alpha, slow], swap: false, exclusive: false}\n")
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port, workers=2)
        assert wait_for(lambda: cls.p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10)
        cls.url = "http://127.0.0.1:%d" % cls.p.port

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()

    def curl(self, *args):
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_version}"] + list(args),
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        body, _, version = out.stdout.rpartition(b"\n")
        return body, version.decode()

    def test_curl_prior_knowledge_streams_a_chat_completion(self):
        body, version = self.curl(
            "--http2-prior-knowledge", "-N", "-H", "content-type: application/json",
            "-d", json.dumps(chat("gpt-4o-mini")), self.url + "/v1/chat/completions")
        self.assertEqual(version, "2")
        self.assertEqual(sse_text(body), tokens(5))
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"))
        # Local answers and errors in the OpenAI envelope, over HTTP/2 too.
        body, version = self.curl("--http2-prior-knowledge", self.url + "/v1/models")
        self.assertEqual((version, len(json.loads(body)["data"])), ("2", 2))
        body, version = self.curl("--http2-prior-knowledge", "-d", json.dumps(chat("nope")),
                                  self.url + "/v1/chat/completions")
        self.assertEqual(json.loads(body)["error"]["code"], 404)

    def test_curl_upgrade_to_h2c(self):
        # A request without a body is upgraded: answered over HTTP/2.
        body, version = self.curl("--http2", "-I", self.url + "/health")  # HEAD
        self.assertEqual(version, "2")
        self.assertIn(b"HTTP/2 200", body)
        body, version = self.curl("--http2", self.url + "/v1/models")
        self.assertEqual(version, "2")
        self.assertEqual(len(json.loads(body)["data"]), 2)
        # One with a body is served over HTTP/1.1 (the upgrade declined).
        body, version = self.curl("--http2", "-d", json.dumps(chat("alpha")),
                                  self.url + "/v1/chat/completions")
        self.assertEqual(version, "1.1")
        self.assertEqual(sse_text(body), tokens(5))

    def test_nghttp_streams_and_upgrades(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(chat("alpha"), f)
            f.flush()
            out = subprocess.run(
                ["nghttp", "-d", f.name, "-H", "content-type: application/json",
                 self.url + "/v1/chat/completions"],
                capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(sse_text(out.stdout), tokens(5))
        out = subprocess.run(["nghttp", "-u", "-v", self.url + "/v1/models"],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"HTTP Upgrade success", out.stdout)
        self.assertIn(b'"object":"list"', out.stdout)

    def test_streams_multiplex_on_one_connection(self):
        c = H2Client(self.p.port)
        try:
            ids = [c.request("POST", "/v1/chat/completions", chat("slow" if i % 2 else "alpha"))
                   for i in range(8)]
            ids.append(c.request("GET", "/v1/models"))
            self.assertTrue(c.pump(lambda: all(c.done(i) for i in ids), 60))
            for i in ids[:-1]:
                s = c.streams[i]
                self.assertEqual(s["headers"][":status"], "200")
                self.assertEqual(s["headers"]["content-type"], "text/event-stream")
                self.assertEqual(s["headers"]["x-accel-buffering"], "no")
                self.assertEqual(sse_text(s["data"]), tokens(40 if i in ids[1:8:2] else 5))
            self.assertEqual(json.loads(c.streams[ids[-1]]["data"])["object"], "list")
        finally:
            c.close()

    def test_rst_stream_cancels_the_upstream_and_the_connection_goes_on(self):
        self.m.stub().Start(pb.StartRequest(model="slow"), timeout=20)
        port = self.m.ports["slow"]
        before = upstream_stats(port)["client_disconnects"]
        c = H2Client(self.p.port)
        try:
            sid = c.request("POST", "/v1/chat/completions", chat("slow"))
            self.assertTrue(c.pump(lambda: b"tok1" in c.streams[sid]["data"]))
            c.reset(sid)
            self.assertTrue(wait_for(
                lambda: upstream_stats(port)["client_disconnects"] == before + 1, 10))
            self.assertTrue(wait_for(lambda: upstream_stats(port)["in_flight"] == 0, 10))
            again = c.request("POST", "/v1/chat/completions", chat("alpha"))
            self.assertTrue(c.pump(lambda: c.done(again)))
            self.assertEqual(sse_text(c.streams[again]["data"]), tokens(5))
        finally:
            c.close()

    def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm(self):
        c = H2Client(self.p.port)
        try:
            for _ in range(300):
                sid = c.request("POST", "/v1/chat/completions", end=False)
                c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            c.flush()
            self.assertTrue(c.pump(lambda: c.goaway is not None or c.closed))
            self.assertIsNotNone(c.goaway)
            self.assertEqual(c.goaway.error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            self.assertTrue(c.pump(lambda: False, 10) is False and c.closed)
        finally:
            c.close()
        # The proxy is fine.
        self.assertEqual(self.p.request("GET", "/health")[0], 200)

    def test_a_bad_preface_is_refused_and_the_proxy_goes_on(self):
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=10)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 9 + b"garbage" * 10)
        got = b""
        while True:
            part = s.recv(4096)
            if not part:
                break
            got += part
        s.close()
        # The server's SETTINGS, then a GOAWAY (frame type 7 on stream 0), then
        # the close.
        self.assertEqual(got[3], 4)
        self.assertIn(b"\x07\x00\x00\x00\x00\x00", got)
        self.assertEqual(self.p.request("GET", "/health")[0], 200)


class Http2TimeoutTest(unittest.TestCase):
    def test_a_silent_request_gets_408_and_a_busy_connection_is_not_idle(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port, workers=1, flags=[
                "--header-timeout-ms", "300", "--body-timeout-ms", "300",
                "--idle-timeout-ms", "600"])
            try:
                self.assertTrue(wait_for(lambda: b'"a"' in p.request("GET", "/v1/models")[2], 10))
                c = H2Client(p.port)
                # A head and no body, ever (slowloris): 408, as on HTTP/1.1.
                sid = c.request("POST", "/v1/chat/completions", {"model": "a"}, end=False)
                self.assertTrue(c.pump(lambda: c.done(sid)))
                self.assertEqual(c.streams[sid]["headers"][":status"], "408")
                self.assertIn(b"did not arrive in time", c.streams[sid]["data"])
                # Requests answered at once, one after another for longer
                # than the idle timeout: no GOAWAY on a connection in use.
                start = time.monotonic()
                while time.monotonic() - start < 2:
                    sid = c.request("GET", "/health")
                    self.assertTrue(c.pump(lambda: c.done(sid)))
                    self.assertEqual(c.streams[sid]["headers"][":status"], "200")
                    self.assertIsNone(c.goaway)
                    time.sleep(0.1)
                # Then idle: GOAWAY and the close.
                self.assertTrue(c.pump(lambda: c.closed, 20))
                self.assertIsNotNone(c.goaway)
                c.close()
            finally:
                p.stop()

    def test_an_upgrade_not_named_in_connection_is_not_taken(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                for connection in (b"keep-alive", b"Upgrade, HTTP2-Settings"):
                    for version in (b"1.0", b"1.1"):
                        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                        s.sendall(b"GET /health HTTP/" + version + b"\r\nHost: x\r\n"
                                  b"Connection: " + connection + b"\r\nUpgrade: h2c\r\n"
                                  b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
                        got = s.recv(4096)
                        s.close()
                        upgraded = version == b"1.1" and connection != b"keep-alive"
                        self.assertEqual(got.startswith(b"HTTP/1.1 101"), upgraded,
                                         (connection, version, got))
                        if not upgraded:
                            self.assertIn(b" 200 ", got.split(b"\r\n")[0])
            finally:
                p.stop()


class Http2FailureTest(unittest.TestCase):
    def test_upstream_death_resets_the_stream(self):
        with ManagerProcess({"c": ["--tokens", "200", "--tokens-per-second", "20",
                                   "--crash-after-ms", "1500"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                m.stub().Start(pb.StartRequest(model="c"), timeout=20)
                c = H2Client(p.port)
                sid = c.request("POST", "/v1/chat/completions", chat("c"))
                self.assertTrue(c.pump(lambda: c.done(sid)))
                s = c.streams[sid]
                self.assertEqual(s["headers"][":status"], "200")
                self.assertIn(b"tok0", s["data"])
                self.assertFalse(s["ended"])  # Never a clean end...
                self.assertEqual(s["reset"], h2.errors.ErrorCodes.INTERNAL_ERROR)
                # ... and the event stream said why before the reset.
                self.assertIn(b'data: {"error":', s["data"])
                c.close()
            finally:
                p.stop()

    def test_a_client_that_stops_reading_stops_the_upstream_not_fills_the_proxy(self):
        # ~18 MB of events at full speed, far more than the kernel buffers
        # between the model and the proxy hold.
        n = 100000
        with ManagerProcess({"big": ["--tokens", str(n)]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                m.stub().Start(pb.StartRequest(model="big"), timeout=20)

                def rss_kib():
                    with open("/proc/%d/status" % p.proc.pid) as f:
                        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

                c = H2Client(p.port)
                before = rss_kib()
                sid = c.request("POST", "/v1/chat/completions", chat("big"))
                # The client reads nothing: its stream window (64 KiB) is
                # soon spent. Time for an unbounded proxy to show itself
                # (the model would finish, the proxy's memory would grow by
                # the whole response).
                time.sleep(2)
                self.assertEqual(upstream_stats(m.ports["big"])["streams_completed"], 0)
                self.assertLess(rss_kib() - before, 8 * 1024)
                # Reading again, the client gets all of it.
                self.assertTrue(c.pump(lambda: c.done(sid), timeout=120))
                s = c.streams[sid]
                self.assertTrue(s["ended"])
                self.assertIn(b"tok%d " % (n - 1), s["data"][-4096:])
                self.assertTrue(s["data"].endswith(b"data: [DONE]\n\n"))
                self.assertEqual(upstream_stats(m.ports["big"])["streams_completed"], 1)
                c.close()
            finally:
                p.stop()

    def test_sigterm_sends_goaway_and_open_streams_finish(self):
        # nghttp: the h2 library drops a connection at the first GOAWAY, even
        # one that lets open streams finish.
        with ManagerProcess({"s": ["--tokens", "20", "--tokens-per-second", "40"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                m.stub().Start(pb.StartRequest(model="s"), timeout=20)
                with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                    json.dump(chat("s"), f)
                    f.flush()
                    client = subprocess.Popen(
                        ["nghttp", "-v", "-d", f.name,
                         "http://127.0.0.1:%d/v1/chat/completions" % p.port],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    # The stream is being served: the upstream is sending it.
                    self.assertTrue(wait_for(
                        lambda: upstream_stats(m.ports["s"])["in_flight"] == 1, 10))
                    p.proc.send_signal(signal.SIGTERM)
                    out, err = client.communicate(timeout=30)
                self.assertEqual(client.returncode, 0, err)
                self.assertRegex(out, rb"recv GOAWAY frame[^\n]*\n[^\n]*error_code=NO_ERROR")
                for i in range(20):
                    self.assertIn(b'"content":"tok%d "' % i, out)
                self.assertIn(b"data: [DONE]", out)
                self.assertEqual(p.proc.wait(30), 0)
            finally:
                p.stop()

if __name__ == "__main__":
    junit.main()
