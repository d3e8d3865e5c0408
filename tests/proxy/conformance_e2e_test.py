"""modelproxy against requests that bend HTTP (RFC 9112/9110) or JSON so
that the proxy and the model would read them differently: real manager,
proxy and models; raw sockets, so nothing is tidied up on the way.
"""

import json
import socket
import unittest

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for


def stats(manager, model):
    """The model's fake_upstream /stats (what it last received)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", manager.ports[model], timeout=10)
    conn.request("GET", "/stats")
    return json.loads(conn.getresponse().read())


class ConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess(
            {"beta": [], "gamma": []},
            model_yaml={"gamma": ["    filters:",
                                  "      stripParams: temperature",
                                  "      setParams: {max_tokens: 100}"]},
            extra_yaml="apiKeys: [sk-key]\n")
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port)
        auth = {"Authorization": "Bearer sk-key"}
        assert wait_for(lambda: cls.p.request("GET", "/v1/models", headers=auth)[2]
                        .count(b'"id"') == 2, 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()

    def raw(self, data):
        """Sends `data`, returns (status, headers dict, body) of the answer."""
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        try:
            s.sendall(data)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            return status, headers, body
        finally:
            s.close()

    def post(self, body, path=b"/v1/chat/completions", extra=b"",
             content_type=b"application/json"):
        if isinstance(body, str):
            body = body.encode()
        return self.raw(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer sk-key\r\nContent-Type: " + content_type +
                        b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def assert_error(self, got, status, message):
        code, _, body = got
        self.assertEqual(code, status, body)
        self.assertIn(message, json.loads(body)["error"]["message"])

    # --- JSON and forms: routing reads what the model reads ---

    def test_a_duplicate_model_key_is_refused(self):
        for body in ['{"model":"beta","model":"gamma","messages":[]}',
                     '{"model":"beta","messages":[],"\\u006dodel":"gamma"}']:
            self.assert_error(self.post(body), 400,
                              'the JSON body has the key "model" twice')

    def test_duplicate_keys_cannot_dodge_a_filter(self):
        for body, key in [
                ('{"model":"gamma","temperature":1,"temperature":2}', "temperature"),
                ('{"model":"gamma","max_tokens":9999,"max_tokens":9999}', "max_tokens")]:
            self.assert_error(self.post(body), 400,
                              'the JSON body has the key "%s" twice' % key)
        # The same body without the repeat is served, filtered.
        code, _, body = self.post('{"model":"gamma","temperature":2,"max_tokens":9999}')
        self.assertEqual(code, 200, body)
        sent = json.loads(stats(self.m, "gamma")["last_body"])
        self.assertNotIn("temperature", sent)
        self.assertEqual(sent["max_tokens"], 100)

    def test_two_model_fields_in_a_form_or_query_are_refused(self):
        b = b"bnd"
        form = (b"--bnd\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbeta\r\n"
                b"--bnd\r\nContent-Disposition: form-data; NAME=\"model\"\r\n\r\ngamma\r\n"
                b"--bnd--\r\n")
        self.assert_error(self.post(form, path=b"/v1/audio/transcriptions",
                                    content_type=b"multipart/form-data; boundary=" + b),
                          400, "the form has more than one model field")
        self.assert_error(self.post("model=beta&model=gamma", path=b"/v1/completions",
                                    content_type=b"application/x-www-form-urlencoded"),
                          400, "the form names the model twice")
        got = self.raw(b"GET /v1/audio/voices?model=beta&model=gamma HTTP/1.1\r\n"
                       b"Host: x\r\nAuthorization: Bearer sk-key\r\n\r\n")
        self.assert_error(got, 400, "the query names the model twice")

    def test_what_form_and_json_parsers_read_otherwise_is_refused(self):
        # "Model": Go's encoding/json reads it as "model" (the last wins).
        self.assert_error(self.post('{"model":"beta","Model":"gamma"}'), 400,
                          'the JSON body has the key "Model" twice')
        part = (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbeta\r\n"
                b"--B--\r\n")
        self.assert_error(self.post(part, path=b"/v1/audio/transcriptions",
                                    content_type=b"multipart/form-data; boundary=B; "
                                                 b"boundary=C"),
                          400, "needs exactly one boundary")
        star = (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbeta\r\n"
                b"--B\r\nContent-Disposition: form-data; name*=utf-8''model\r\n\r\n"
                b"gamma\r\n--B--\r\n")
        self.assert_error(self.post(star, path=b"/v1/audio/transcriptions",
                                    content_type=b"multipart/form-data; boundary=B"),
                          400, "named with name*")

    def test_another_site_may_not_stop_models(self):
        self.assertEqual(self.post('{"model":"beta","messages":[]}')[0], 200)
        pid = self.m.model("beta").pid
        # A plain HTML form on another site posts with no preflight.
        got = self.raw(b"POST /unload HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                       b"Authorization: Bearer sk-key\r\nOrigin: http://evil.example\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: 3\r\n\r\na=b")
        self.assert_error(got, 403, "a request from another site (Origin "
                                    "http://evil.example, Host 127.0.0.1:8080)")
        self.assertEqual(self.m.model("beta").pid, pid)
        # The same origin may (a page served by this very proxy).
        code, _, _ = self.raw(b"POST /unload?model=beta HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                              b"Authorization: Bearer sk-key\r\n"
                              b"Origin: http://127.0.0.1:8080\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(code, 200)

    # --- HTTP/1.1 (RFC 9112, 9110) ---

    def test_host_is_required_once(self):
        auth = b"Authorization: Bearer sk-key\r\n"
        self.assert_error(self.raw(b"GET /v1/models HTTP/1.1\r\n" + auth + b"\r\n"),
                          400, "an HTTP/1.1 request needs a Host header")
        self.assert_error(self.raw(b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n" +
                                   auth + b"\r\n"),
                          400, "more than one Host header")
        code, _, _ = self.raw(b"GET /v1/models HTTP/1.0\r\n" + auth + b"\r\n")
        self.assertEqual(code, 200)  # HTTP/1.0 needs none.

    def test_other_http_versions_are_505(self):
        for version in [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/9.9"]:
            self.assert_error(self.raw(b"GET /health " + version + b"\r\nHost: a\r\n\r\n"),
                              505, "is not supported")

    def test_an_absolute_form_target_is_routed_by_its_path(self):
        body = b'{"model":"beta","messages":[]}'
        code, _, got = self.raw(
            b"POST http://127.0.0.1:1/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer sk-key\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(code, 200, got)
        self.assertEqual(stats(self.m, "beta")["last_path"], "/v1/chat/completions")

    def test_http10_with_transfer_encoding_is_400(self):
        self.assert_error(self.raw(b"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                          400, "Transfer-Encoding in an HTTP/1.0 request")

    def test_chunked_framing_is_read_strictly(self):
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk-key\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assert_error(self.raw(head + b"10000000000000000\r\n"), 400,
                          "a chunk size of 2^64 or more")
        self.assert_error(self.raw(head + b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400,
                          "a bare LF in a chunk extension")
        body = b'{"model":"beta","messages":[]}'
        code, _, got = self.raw(head + b"%x;ext=\"v\"\r\n" % len(body) + body +
                                b"\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual(code, 200, got)

    def test_the_bearer_scheme_in_any_case(self):
        for scheme in [b"bearer", b"BEARER", b"Bearer  "]:
            code, _, body = self.raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
                                     b"Authorization: " + scheme + b" sk-key\r\n\r\n")
            self.assertEqual(code, 200, (scheme, body))
        code, _, _ = self.raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
                              b"Authorization: bearer sk-wrong\r\n\r\n")
        self.assertEqual(code, 401)

    def test_proxy_authorization_is_not_forwarded(self):
        code, _, body = self.post('{"model":"beta","messages":[]}',
                                  extra=b"Proxy-Authorization: Basic c2VjcmV0\r\n"
                                        b"X-Passed: yes\r\n")
        self.assertEqual(code, 200, body)
        headers = {k.lower(): v for k, v in stats(self.m, "beta")["last_headers"].items()}
        self.assertEqual(headers.get("x-passed"), "yes")
        self.assertNotIn("proxy-authorization", headers)
        self.assertNotIn("authorization", headers)  # The proxy's key stays too.

    def test_get_unload_stops_nothing(self):
        self.assertEqual(self.post('{"model":"beta","messages":[]}')[0], 200)
        pid = self.m.model("beta").pid
        code, headers, body = self.raw(b"GET /unload HTTP/1.1\r\nHost: x\r\n"
                                       b"Authorization: Bearer sk-key\r\n\r\n")
        self.assertEqual(code, 405, body)
        self.assertEqual(headers.get("allow"), "POST")
        self.assertEqual(self.m.model("beta").pid, pid)
        code, _, body = self.raw(b"POST /unload?model=beta HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer sk-key\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(code, 200, body)
        self.assertEqual(self.m.model("beta").pid, 0)


class OpenListenerTest(unittest.TestCase):
    def test_listening_beyond_this_host_without_api_keys_is_warned(self):
        with ManagerProcess({"a": []}) as m:
            # Beyond this host (every address); the test's traffic stays on
            # loopback.
            p = ProxyProcess(m.port, host="0.0.0.0")
            try:
                self.assertTrue(p.wait_log(
                    r" warn listening on 0\.0\.0\.0:\d+ \(beyond this host\) and the "
                    r"config sets no apiKeys: anyone who can reach it can use every "
                    r"model and stop them all"), p.log())
            finally:
                p.stop()
        with ManagerProcess({"a": []}, extra_yaml="apiKeys: [k]\n") as m:
            p = ProxyProcess(m.port, host="0.0.0.0")
            try:
                self.assertTrue(p.wait_log(r"connected to the model manager"), p.log())
                self.assertTrue(wait_for(lambda: p.request(
                    "GET", "/v1/models", headers={"Authorization": "Bearer k"})[0] == 200,
                    10))
                self.assertFalse([l for l in p.log() if "no apiKeys" in l], p.log())
            finally:
                p.stop()


class RebindingTest(unittest.TestCase):
    def test_a_loopback_proxy_without_keys_takes_changes_only_by_address(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                self.assertEqual(p.request("POST", "/v1/chat/completions",
                                           {"model": "a", "messages": []})[0], 200)
                pid = m.model("a").pid
                # A page at rebind.evil.example, its name resolving here.
                status, _, body = p.request(
                    "POST", "/unload", headers={"Host": "rebind.evil.example:%d" % p.port})
                self.assertEqual(status, 403, body)
                self.assertIn(b"DNS rebinding", body)
                self.assertEqual(m.model("a").pid, pid)
                for host in ["127.0.0.1:%d" % p.port, "localhost:%d" % p.port]:
                    status, _, body = p.request("POST", "/unload?model=a",
                                                headers={"Host": host})
                    self.assertEqual(status, 200, body)
            finally:
                p.stop()


if __name__ == "__main__":
    junit.main()
