"""WebSockets through modelproxy, end to end: the real manager and proxy, a
real WebSocket server as the model (ws_echo.py), and real clients: Node's
WebSocket (undici) and a raw socket for what needs exact bytes.

A handshake (GET with Upgrade: websocket) is routed like any request (here
/upstream/<model>/...), starts the model, holds its lease while the
connection lasts, and after the upstream's 101 the proxy passes bytes both
ways as they are until either side closes."""

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import unittest

from tests.manager.manager_proc import ManagerProcess, free_port
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, under_sanitizer, wait_for

from modelplane.v1 import model_manager_pb2 as pb

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class EchoManager(ManagerProcess):
    """A manager with `echo` (ws_echo.py) and `other` (a fake_upstream),
    which swap with each other (one group)."""

    def __init__(self):
        self.echo_port = free_port()
        self.other_port = free_port()
        super().__init__({})

    def config_text(self, **kw):
        cmd = "/usr/bin/python3 %s --port %d" % (runfile("tests/proxy/ws_echo.py"),
                                                 self.echo_port)
        other = "%s --port %d --model other" % (
            runfile("tools/fake_upstream/fake_upstream"), self.other_port)
        return ("models:\n"
                "  echo:\n    cmd: '%s'\n    proxy: http://127.0.0.1:%d\n"
                "    checkEndpoint: /health\n"
                "  other:\n    cmd: '%s'\n    proxy: http://127.0.0.1:%d\n"
                "groups:\n  g: {members: [echo, other]}\n"
                % (cmd, self.echo_port, other, self.other_port))


def client_frame(opcode, payload):
    """A client frame: final, masked (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("closed with %r unread" % self.buf)
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("closed in the head: %r" % self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head.decode()

    def frame(self):
        b0, b1 = self.exact(2)
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.exact(8))[0]
        return b0 & 0x0F, self.exact(n)

    def closed(self):
        """True once the peer closed (after what is buffered)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True


def handshake(port, path, first=b"", upgrade="websocket", connection="Upgrade",
              extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: %s\r\n"
               "Connection: %s\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, upgrade, connection, key, extra)).encode() + first)
    r = Reader(s)
    return s, r, r.head(), key


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        pairs = frozenset(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",")
                          if kv) if labels else frozenset()
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = EchoManager()
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port, workers=2)
        # The proxy's route table (and API keys) arrive through Watch.
        assert wait_for(lambda: b'"other"' in cls.p.request("GET", "/v1/models")[2], 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()

    def upstream_stats(self):
        out = subprocess.run(
            ["curl", "-sS", "http://127.0.0.1:%d/stats" % self.m.echo_port],
            capture_output=True, timeout=10).stdout
        return json.loads(out) if out else None

    def in_flight(self):
        text = self.p.request("GET", "/metrics")[2].decode()
        # Every node's series for the model (one node here).
        return sum(v for (name, labels), v in parse_metrics(text).items()
                   if name == "modelproxy_in_flight" and ("model", "echo") in labels)

    def test_messages_pass_both_ways_and_the_lease_is_held(self):
        s, r, head, key = handshake(self.p.port, "/upstream/echo/ws?room=1")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertIn("Sec-WebSocket-Accept: " + accept_for(key), head)
        self.assertRegex(head, r"(?i)\r\nupgrade: websocket")
        # The upstream's first message came in the same read as its 101.
        self.assertEqual(r.frame(), (1, b"hello /ws?room=1"))
        for size in (5, 200, 70000):  # The three length encodings.
            payload = os.urandom(size)
            s.sendall(client_frame(2, payload))
            self.assertEqual(r.frame(), (2, payload))
        s.sendall(client_frame(9, b"p"))
        self.assertEqual(r.frame(), (10, b"p"))
        # The lease is held while the connection lasts...
        self.assertEqual(self.in_flight(), 1)
        # (Once the other tests' tunnels are all closed upstream.)
        self.assertTrue(wait_for(lambda: (lambda st: st["opened"] - st["closed"] == 1)(
            self.upstream_stats()), 10))
        closed_before = self.upstream_stats()["closed"]
        s.close()
        # ...and the client leaving reaches the upstream and gives it back.
        self.assertTrue(wait_for(
            lambda: self.upstream_stats()["closed"] > closed_before, 10))
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 10))

    def test_the_upstream_closing_ends_the_connection(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        r.frame()  # hello
        s.sendall(client_frame(8, struct.pack("!H", 1000)))
        self.assertEqual(r.frame(), (8, struct.pack("!H", 1000)))
        self.assertTrue(r.closed())
        s.close()
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 10))

    def test_the_client_closing_first_loses_nothing(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        r.frame()  # hello
        # A last message and the close, then the client's FIN at once: the
        # upstream still gets both, and its answers still come back.
        s.sendall(client_frame(1, b"last words") + client_frame(8, struct.pack("!H", 1000)))
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(r.frame(), (1, b"last words"))
        self.assertEqual(r.frame(), (8, struct.pack("!H", 1000)))
        self.assertTrue(r.closed())
        s.close()
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 10))

    def test_the_client_closing_first_under_backpressure_loses_nothing(self):
        # The client sends 8 MiB of messages and its FIN while the upstream
        # is slower than it, so the proxy pauses reading the client and
        # resumes as the upstream drains. Once the client's FIN is read, the
        # upstream's queue still drains: every echo must still come back,
        # then the close.
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        r.frame()  # hello
        payload = os.urandom(64 << 10)
        count = 128

        def send():
            for _ in range(count):
                s.sendall(client_frame(2, payload))
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            for i in range(count):
                self.assertEqual(r.frame(), (2, payload), "echo %d" % i)
        finally:
            sender.join(60)
        self.assertTrue(r.closed())
        s.close()
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 10))

    def test_a_handshake_with_a_body_is_refused(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws",
                                  extra="Content-Length: 18\r\n",
                                  first=b"GET /stats HTTP/1.1")
        self.assertTrue(head.startswith("HTTP/1.1 400 "), head)
        self.assertIn(b"cannot have a body", r.exact(int(
            head.lower().split("content-length: ")[1].split("\r\n")[0])))
        self.assertTrue(r.closed())
        s.close()

    def test_websocket_with_h2c_in_the_upgrade_is_a_websocket(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws",
                                  upgrade="websocket, h2c",
                                  connection="Upgrade, HTTP2-Settings",
                                  extra="HTTP2-Settings: AAMAAABkAAQAAP__\r\n")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertRegex(head, r"(?i)\r\nupgrade: websocket")
        self.assertEqual(r.frame(), (1, b"hello /ws"))
        s.close()

    def test_a_frame_sent_with_the_handshake_is_not_lost(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws",
                                  first=client_frame(1, b"eager"))
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertEqual(r.frame(), (1, b"hello /ws"))
        self.assertEqual(r.frame(), (1, b"eager"))
        s.close()

    def test_a_refused_upgrade_is_an_ordinary_answer_then_close(self):
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/other")
        self.assertTrue(head.startswith("HTTP/1.1 404 "), head)
        self.assertIn("Connection: close", head)
        self.assertEqual(r.exact(9), b"not found")
        self.assertTrue(r.closed())
        s.close()

    def test_backpressure_both_ways_bounds_the_proxy(self):
        # The client floods frames and reads nothing: the echoes back up to
        # the upstream, which stops reading, so the proxy stops reading the
        # client. Nothing grows without bound: the client's sends block long
        # before 96 MiB, and the proxy's memory stays near its two 1 MiB
        # bounds (the rest waits in kernel socket buffers).
        def rss_kib():
            with open("/proc/%d/status" % self.p.proc.pid) as f:
                return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        before = rss_kib()
        frame = client_frame(2, os.urandom(64 << 10))
        s.settimeout(3)  # A send that stays blocked this long: pushed back.
        sent = 0
        try:
            while sent < (96 << 20):
                s.sendall(frame)
                sent += len(frame)
        except socket.timeout:
            pass
        self.assertLess(sent, 96 << 20, "the proxy kept reading a client "
                        "whose upstream could not keep up")
        if not under_sanitizer():  # RSS there is ASan's allocator's.
            self.assertLess(rss_kib() - before, 24 << 10)
        s.close()
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 20))

    def test_a_swap_ends_the_tunnel_instead_of_waiting_for_it(self):
        # An open WebSocket holds echo's lease. A request for `other` swaps
        # echo out: the revocation closes the tunnel (the model is going
        # anyway) rather than holding the swap until the manager's revoke
        # timeout (5 minutes) cut the proxy's whole lease stream.
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        r.frame()  # hello
        status, _, body = self.p.request(
            "POST", "/v1/chat/completions", {"model": "other", "messages": []},
            timeout=60)
        self.assertEqual(status, 200, body)
        self.assertTrue(r.closed())
        s.close()
        self.assertTrue(wait_for(lambda: self.in_flight() == 0, 10))
        # And a new handshake swaps echo back in.
        s, r, head, _ = handshake(self.p.port, "/upstream/echo/ws")
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertEqual(r.frame(), (1, b"hello /ws"))
        s.close()

    def test_node_websocket_client(self):
        script = r"""
const ws = new WebSocket(process.argv[1]);
const got = [];
ws.onmessage = (e) => {
  got.push(e.data);
  if (got.length === 1) ws.send('from node');
  else ws.close(1000);
};
ws.onclose = (e) => { console.log(JSON.stringify({got, code: e.code})); };
ws.onerror = (e) => { console.log(JSON.stringify({error: String(e.message)})); };
"""
        out = subprocess.run(
            ["node", "--no-warnings", "--experimental-websocket", "-e", script,
             "ws://127.0.0.1:%d/upstream/echo/ws/node" % self.p.port],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(result, {"got": ["hello /ws/node", "from node"],
                                  "code": 1000})


class IgnoredEchoManager(EchoManager):
    """EchoManager with `compat: {ignoreWebsockets: true}` on echo."""

    def config_text(self, **kw):
        return super().config_text(**kw).replace(
            "    checkEndpoint: /health\n",
            "    checkEndpoint: /health\n    compat: {ignoreWebsockets: true}\n")


class IgnoredWebSocketTest(unittest.TestCase):
    """llama-swap's compat.ignoreWebsockets: a WebSocket neither starts its
    model nor holds a lease on it."""

    def test_a_websocket_neither_starts_nor_holds_the_model(self):
        m = IgnoredEchoManager()
        m.start()
        p = ProxyProcess(m.port, workers=1)
        try:
            self.assertTrue(wait_for(
                lambda: b'"other"' in p.request("GET", "/v1/models")[2], 10))
            # Not loaded: 409, and nothing starts.
            s, r, head, _ = handshake(p.port, "/upstream/echo/ws")
            s.close()
            self.assertTrue(head.startswith("HTTP/1.1 409 "), head)
            self.assertIn("compat.ignoreWebsockets", head + r.buf.decode())
            self.assertEqual(m.model("echo").state, pb.MODEL_STATE_STOPPED)
            # Loaded: the tunnel works, and holds no lease.
            m.stub().Start(pb.StartRequest(model="echo"), timeout=30)
            self.assertTrue(wait_for(
                lambda: b'"loaded"' in p.request("GET", "/v1/models")[2], 10))
            s, r, head, key = handshake(p.port, "/upstream/echo/ws")
            self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
            self.assertEqual(r.frame(), (1, b"hello /ws"))
            s.sendall(client_frame(1, b"ping"))
            self.assertEqual(r.frame(), (1, b"ping"))
            self.assertEqual(m.model("echo").active_leases, 0)
            # A swap does not wait for it: the model goes, the tunnel ends.
            m.stub().Start(pb.StartRequest(model="other"), timeout=30)
            self.assertEqual(m.model("echo").state, pb.MODEL_STATE_STOPPED)
            self.assertTrue(wait_for(r.closed, 10))
            s.close()
        finally:
            p.stop()
            m.stop()


if __name__ == "__main__":
    junit.main()
