"""Large request bodies through modelproxy: held once, bounded all together,
given back: real manager, proxy and model; HTTP/1.1 (Content-Length and
chunked) on raw sockets, and HTTP/2 with curl.
"""

import json
import os
import random
import re
import socket
import subprocess
import tempfile
import threading
import unittest

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import under_sanitizer, wait_for


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%x" % h


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def gauge(proxy, name):
    text = proxy.request("GET", "/metrics")[2].decode()
    m = re.search(r"^%s (\S+)$" % name, text, re.M)
    return float(m.group(1)) if m else None


def post(port, body, chunked=False):
    """A raw request; the answer's status and body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        if chunked:
            s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 1 << 20):
                piece = body[i:i + (1 << 20)]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        else:
            s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: (\d+)", head, re.I)
        while m and len(rest) < int(m.group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(head.split(b" ")[1]), rest
    finally:
        s.close()


def big_body(mib, seed):
    rng = random.Random(seed)
    text = "".join(rng.choice("abcdefghij ") for _ in range(4096))
    prompt = (text * ((mib << 20) // len(text) + 1))[:(mib << 20)]
    return json.dumps({"model": "m", "prompt": prompt}).encode()


class BodyTest(unittest.TestCase):
    def upstream_stats(self, m):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", m.ports["m"], timeout=10)
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())

    def test_large_bodies_arrive_whole_and_the_memory_goes_back(self):
        with ManagerProcess({"m": []}) as m:
            p = ProxyProcess(m.port)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                self.assertEqual(p.request("POST", "/v1/completions",
                                           {"model": "m", "prompt": "x"})[0], 200)
                base = rss_kib(p.proc.pid)
                bodies = [big_body(30 - i, i) for i in range(3)]  # Told apart by size.
                results = [None] * 3
                chunked = [False, True, False]

                def send(i):
                    results[i] = post(p.port, bodies[i], chunked[i])
                threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(120)
                self.assertEqual([r[0] for r in results], [200, 200, 200], results)
                # Each reached the model whole and unchanged (the last one, here).
                stats = self.upstream_stats(m)
                last = next(b for b in bodies if len(b) == stats["last_body_bytes"])
                self.assertEqual(stats["last_body_fnv1a"], fnv1a(last))
                # Nothing held now, and the memory is back near where it was.
                self.assertTrue(wait_for(
                    lambda: gauge(p, "modelproxy_buffered_body_bytes") == 0, 10))
                if not under_sanitizer():  # RSS there is ASan's allocator's.
                    self.assertTrue(
                        wait_for(lambda: rss_kib(p.proc.pid) < base + 20000, 10),
                        "RSS %d KiB after 90 MiB of uploads, %d before"
                        % (rss_kib(p.proc.pid), base))
            finally:
                p.stop()

    def test_bodies_past_the_budget_are_refused_with_503(self):
        with ManagerProcess({"m": []}) as m:
            p = ProxyProcess(m.port, flags=["--max-buffered-body-mib", "4"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                # Once what it holds would pass the bound.
                status, body = post(p.port, big_body(5, 1))
                self.assertEqual(status, 503, body)
                self.assertIn("--max-buffered-body-mib 4", json.loads(body)["error"]["message"])
                # Chunked: refused once it passes the bound; the rest is dropped.
                status, body = post(p.port, big_body(5, 2), chunked=True)
                self.assertEqual(status, 503, body)
                # HTTP/2 too (curl, prior knowledge).
                with tempfile.NamedTemporaryFile() as f:
                    f.write(big_body(5, 3))
                    f.flush()
                    out = subprocess.run(
                        ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                         "-w", "%{http_code}", "-H", "Content-Type: application/json",
                         "--data-binary", "@" + f.name,
                         "http://127.0.0.1:%d/v1/completions" % p.port],
                        capture_output=True, text=True, timeout=60)
                    self.assertEqual(out.stdout, "503", out.stderr)
                self.assertEqual(gauge(p, "modelproxy_body_budget_refused_total"), 3)
                # A head that declares much and sends little holds only what
                # it sent: five such clients (20 MiB declared) leave the
                # budget to others.
                slow = []
                for _ in range(5):
                    c = socket.create_connection(("127.0.0.1", p.port), timeout=30)
                    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 4194304\r\n\r\n{")
                    slow.append(c)
                self.assertTrue(wait_for(
                    lambda: gauge(p, "modelproxy_buffered_body_bytes") == 5, 10),
                    gauge(p, "modelproxy_buffered_body_bytes"))
                status, body = post(p.port, big_body(3, 7))
                self.assertEqual(status, 200, body)
                for c in slow:
                    c.close()
                # Under the bound, served; nothing is left held.
                status, body = post(p.port, big_body(3, 4))
                self.assertEqual(status, 200, body)
                self.assertTrue(wait_for(
                    lambda: gauge(p, "modelproxy_buffered_body_bytes") == 0, 10))
                # An answered request's body is not kept by its idle
                # keep-alive connection (nor its share of the budget).
                s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
                try:
                    unknown = big_body(3, 5).replace(b'"model": "m"', b'"model": "nope"')
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(unknown) + unknown)
                    self.assertIn(b" 404 ", s.recv(65536))
                    self.assertTrue(wait_for(
                        lambda: gauge(p, "modelproxy_buffered_body_bytes") == 0, 10),
                        gauge(p, "modelproxy_buffered_body_bytes"))
                    status, _ = post(p.port, big_body(3, 6))  # The budget is free.
                    self.assertEqual(status, 200)
                finally:
                    s.close()
            finally:
                p.stop()


if __name__ == "__main__":
    junit.main()
