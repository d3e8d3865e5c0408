"""TLS on modelproxy's listener (--tls-cert-file / --tls-key-file), with real
clients: curl over HTTP/2 and HTTP/1.1, nghttp, openssl s_client (ALPN, TLS
versions), the OpenAI Node SDK trusting the test CA through
NODE_EXTRA_CA_CERTS, Python's ssl for a connection held across a SIGHUP that
replaces the certificate; no plaintext on the TLS port; the handshake timeout;
the `modelplane` binary with the same flags."""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from modelplane.v1 import model_manager_pb2 as pb
import unittest

from tests.manager.manager_proc import ManagerProcess, free_port
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

SCRIPT = os.path.realpath(runfile("tests/e2e/node/chat.mjs"))


def openssl(*args, cwd):
    out = subprocess.run(["openssl"] + list(args), capture_output=True, text=True,
                         cwd=cwd, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_ca(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=modelplane test CA", cwd=d)


def make_cert(d, serial, cert="cert.pem", key="key.pem"):
    """A server certificate for 127.0.0.1 and localhost signed by the CA, with
    this serial; written to temporary names, then renamed over `cert` and `key`
    (as a certificate manager does)."""
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "new.key", "-out",
            "new.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "new.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(serial), "-out", "new.pem", "-days", "2",
            "-extfile", "ext", cwd=d)
    os.replace(os.path.join(d, "new.key"), os.path.join(d, key))
    os.replace(os.path.join(d, "new.pem"), os.path.join(d, cert))


def served_serial(port, *extra):
    """The serial of the certificate a new connection is served (openssl)."""
    s = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
                       + list(extra), input="", capture_output=True, text=True,
                       timeout=30)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                    s.stdout, re.S)
    assert pem, s.stdout + s.stderr
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                       capture_output=True, text=True, timeout=30)
    return int(x.stdout.strip().split("=")[1], 16)


def metric(text, name, labels):
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return None


class TlsProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        make_ca(cls.dir)
        make_cert(cls.dir, 1)
        cls.ca = os.path.join(cls.dir, "ca.pem")
        cls.cert = os.path.join(cls.dir, "cert.pem")
        cls.key = os.path.join(cls.dir, "key.pem")
        cls.m = ManagerProcess({"alpha": ["--tokens", "5"]})
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port, workers=2, flags=[
            "-tls-cert-file", cls.cert, "-tls-key-file", cls.key,
            "--tls-handshake-timeout-ms", "400"])
        cls.url = "https://127.0.0.1:%d" % cls.p.port
        assert cls.p.wait_log(r"listening on 127\.0\.0\.1:%d \(TLS\)" % cls.p.port, 5)
        assert wait_for(lambda: b'"alpha"' in cls.https("GET", "/v1/models")[1], 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()
        cls.tmp.cleanup()

    @classmethod
    def https(cls, method, path, body=None):
        ctx = ssl.create_default_context(cafile=cls.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", cls.p.port, context=ctx,
                                           timeout=30)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def curl(self, *args):
        out = subprocess.run(["curl", "-sS", "--cacert", self.ca] + list(args),
                             capture_output=True, text=True, timeout=60)
        return out.returncode, out.stdout, out.stderr

    def test_curl_over_http2_and_http1_streams_a_chat(self):
        for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
            rc, out, err = self.curl(flag, "-o", "/dev/null", "-w",
                                     "%{http_code} %{http_version}",
                                     self.url + "/v1/models")
            self.assertEqual((rc, out), (0, "200 " + version), err)
            rc, out, err = self.curl(
                flag, "-N", self.url + "/v1/chat/completions", "-d",
                json.dumps({"model": "alpha", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}))
            self.assertEqual(rc, 0, err)
            self.assertIn("data: [DONE]", out)
            self.assertGreaterEqual(out.count('"delta"'), 5, out)

    def test_nghttp_negotiates_h2(self):
        out = subprocess.run(["nghttp", "-v", self.url + "/v1/models"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("The negotiated protocol: h2", out.stdout)
        self.assertIn(":status: 200", out.stdout)
        self.assertIn('"alpha"', out.stdout)

    def s_client(self, *args):
        return subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.p.port]
            + list(args), input="", capture_output=True, text=True, timeout=30)

    def test_openssl_alpn_and_versions(self):
        self.assertIn("ALPN protocol: h2", self.s_client("-alpn", "h2,http/1.1").stdout)
        self.assertIn("ALPN protocol: http/1.1", self.s_client("-alpn", "http/1.1").stdout)
        self.assertIn("No ALPN negotiated", self.s_client("-alpn", "spdy/3").stdout)
        for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            out = self.s_client(version, "-CAfile", self.ca)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"New, %s, Cipher is|Protocol\s*: %s"
                             % (re.escape(name), re.escape(name)))
            self.assertIn("Verify return code: 0 (ok)", out.stdout)
        old = self.s_client("-tls1_1")
        self.assertNotEqual(old.returncode, 0)
        self.assertIn("alert protocol version", old.stdout + old.stderr)

    def test_openai_node_sdk_trusts_the_test_ca(self):
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=self.ca)
        out = subprocess.run(["node", SCRIPT, self.url + "/v1", "stream", "alpha"],
                             capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        result = json.loads(out.stdout)
        self.assertGreaterEqual(result["chunks"], 5)
        self.assertTrue(result["text"])
        # Without the CA the SDK refuses the certificate.
        env = dict(os.environ)
        env.pop("NODE_EXTRA_CA_CERTS", None)
        out = subprocess.run(["node", SCRIPT, self.url + "/v1", "models"],
                             capture_output=True, text=True, timeout=60, env=env)
        refused = out.returncode != 0 or "error" in json.loads(out.stdout)
        self.assertTrue(refused, out.stdout)

    def failures(self, reason):
        status, body = self.https("GET", "/metrics")
        self.assertEqual(status, 200)
        return metric(body.decode(), "modelproxy_tls_handshake_failures_total",
                      '{reason="%s"}' % reason)

    def test_plaintext_gets_no_answer_and_is_counted(self):
        before = self.failures("error")
        with socket.create_connection(("127.0.0.1", self.p.port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertFalse(data.startswith(b"HTTP/"), data)
        rc, _, err = self.curl("http://127.0.0.1:%d/health" % self.p.port)
        self.assertNotEqual(rc, 0)
        self.assertTrue(wait_for(lambda: self.failures("error") >= before + 2, 5))
        self.assertEqual(self.https("GET", "/health")[0], 200)

    def test_a_client_that_never_handshakes_is_closed(self):
        before = self.failures("timeout")
        with socket.create_connection(("127.0.0.1", self.p.port), timeout=20) as s:
            self.assertEqual(s.recv(1), b"")  # Closed at the handshake timeout.
        self.assertTrue(wait_for(lambda: self.failures("timeout") >= before + 1, 5))

    def test_sighup_reloads_the_certificate_for_new_connections(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        held = http.client.HTTPSConnection("127.0.0.1", self.p.port, context=ctx,
                                           timeout=30)
        try:
            held.request("GET", "/health")
            r = held.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            first = held.sock.getpeercert()["serialNumber"]
            self.assertEqual(int(first, 16), served_serial(self.p.port))
            make_cert(self.dir, 7)
            self.p.proc.send_signal(signal.SIGHUP)
            self.assertTrue(self.p.wait_log(r"TLS certificate reloaded: .*serial 07", 10),
                            self.p.log())
            self.assertEqual(served_serial(self.p.port), 7)
            # The open connection carries on with its own.
            held.request("GET", "/health")
            r = held.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(held.sock.getpeercert()["serialNumber"], first)
            # A key that cannot be used: the error is logged, the last good
            # certificate stays.
            with open(self.key, "w") as f:
                f.write("not a key\n")
            self.p.proc.send_signal(signal.SIGHUP)
            self.assertTrue(self.p.wait_log(r"error SIGHUP: cannot use the key .*"
                                            r"the certificate in use stays", 10),
                            self.p.log())
            self.assertEqual(served_serial(self.p.port), 7)
            self.assertEqual(self.https("GET", "/health")[0], 200)
        finally:
            held.close()
            make_cert(self.dir, 8)  # Good files again for the other tests.


class TlsFlagsTest(unittest.TestCase):
    def test_bad_tls_flags_exit_2_naming_the_problem(self):
        with tempfile.TemporaryDirectory() as d:
            make_ca(d)
            make_cert(d, 3)
            bad = os.path.join(d, "bad.pem")
            with open(bad, "w") as f:
                f.write("junk\n")
            cases = [
                (["--tls-cert-file", os.path.join(d, "cert.pem")],
                 "--tls-cert-file and --tls-key-file go together"),
                (["--tls-cert-file", bad, "--tls-key-file", os.path.join(d, "key.pem")],
                 "cannot use the certificate " + bad),
                (["--tls-cert-file", os.path.join(d, "cert.pem"),
                  "--tls-key-file", os.path.join(d, "ca.key")],
                 "cannot use the key " + os.path.join(d, "ca.key")),
            ]
            for args, message in cases:
                out = subprocess.run(
                    [runfile("proxy/modelproxy"), "--listen",
                     "127.0.0.1:%d" % free_port(), "--manager", "127.0.0.1:1"] + args,
                    capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn(message, out.stderr)

    def test_modelplane_serves_https_with_llama_swaps_flags(self):
        with tempfile.TemporaryDirectory() as d:
            make_ca(d)
            make_cert(d, 5)
            config = os.path.join(d, "config.yaml")
            fake = runfile("tools/fake_upstream/fake_upstream")
            with open(config, "w") as f:
                f.write("models:\n  m:\n    cmd: %s --port ${PORT} --model m\n"
                        "    proxy: http://127.0.0.1:${PORT}\n" % fake)
            port = free_port()
            env = dict(os.environ, XDG_RUNTIME_DIR=d)
            proc = subprocess.Popen(
                [runfile("cmd/modelplane"), "-config", config, "-listen",
                 "127.0.0.1:%d" % port, "-tls-cert-file", os.path.join(d, "cert.pem"),
                 "-tls-key-file", os.path.join(d, "key.pem")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            try:
                ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))

                def chat():
                    try:
                        conn = http.client.HTTPSConnection("127.0.0.1", port,
                                                           context=ctx, timeout=30)
                        conn.request("POST", "/v1/chat/completions", body=json.dumps(
                            {"model": "m", "messages": [{"role": "user",
                                                         "content": "hi"}]}))
                        r = conn.getresponse()
                        body = r.read()
                        # Before "listening" is logged: 503 until the
                        # proxy has its settings.
                        return None if r.status == 503 else (r.status, body)
                    except OSError:
                        return None
                result = wait_for(chat, 30)
                self.assertIsNotNone(result)
                self.assertEqual(result[0], 200, result[1])
                # One SIGHUP: the config and the certificate are read again.
                self.assertEqual(served_serial(port), 5)
                make_cert(d, 6)
                proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: served_serial(port) == 6, 10))
            finally:
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(60)
                log = proc.stderr.read()
            self.assertEqual(rc, 0, log)
            self.assertRegex(log, r"modelplane listening on 127\.0\.0\.1:%d \(TLS\)" % port)


class HttpsPeerTest(unittest.TestCase):
    """Peers over https://: nginx terminates TLS in front of a fake_upstream
    on loopback (under /api/, a base path), with the test CA's certificate
    for 127.0.0.1 and localhost."""

    @classmethod
    def setUpClass(cls):
        from tools.testing.fake_upstream_proc import FakeUpstream
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.dir = cls.tmp.name
        make_ca(d)
        make_cert(d, 11)
        cls.ca = os.path.join(d, "ca.pem")
        cls.up = FakeUpstream("--tokens", "3")
        cls.up.start()
        cls.ng_port = free_port()
        cls.ng_keepalive_port = free_port()  # The peer "named" alone.
        cls.ng_model_port = free_port()  # In front of the model "secure".
        # A TLS peer that takes the connection and never answers.
        cls.silent = socket.socket()
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(16)
        url = "https://%%s:%d/api" % cls.ng_port
        peers = ("peers:\n"
                 "  trusted:\n    proxy: %s\n    models: [m1]\n"
                 "    tls: {caFile: %s}\n"
                 "  named:\n    proxy: https://localhost:%d/api/\n    models: [m2]\n"
                 "    tls: {caFile: %s}\n    timeouts: {tlsHandshake: 5, keepalive: 15}\n"
                 "  silent:\n    proxy: https://127.0.0.1:%d\n    models: [m5]\n"
                 "    timeouts: {connect: 1, tlsHandshake: 2}\n"
                 "  system:\n    proxy: %s\n    models: [m3]\n"
                 "  blind:\n    proxy: %s\n    models: [m4]\n"
                 "    tls: {insecureSkipVerify: true}\n"
                 "selectors:\n  via-peer: {targets: [trusted/m1]}\n"
                 % (url % "127.0.0.1", cls.ca, cls.ng_keepalive_port, cls.ca,
                    cls.silent.getsockname()[1], url % "127.0.0.1",
                    url % "127.0.0.1"))
        model_url = "https://localhost:%d" % cls.ng_model_port
        # Models whose upstream is https://: the manager's health checks and
        # the proxy's requests go through nginx's TLS to the model's port.
        cls.m = ManagerProcess(
            {"local": [], "secure": ["--tokens", "2"], "untrusted": []},
            extra_yaml=peers,
            proxies={"secure": model_url, "untrusted": model_url},
            model_yaml={"secure": ["    tls: {caFile: %s}" % cls.ca],
                        "untrusted": ["    healthCheckTimeout: 2"]})
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("""worker_processes 1; pid %(d)s/nginx.pid; daemon off;
error_log %(d)s/nginx.err warn;
events { worker_connections 64; }
http {
  log_format peer '$connection $ssl_server_name $request';
  access_log %(d)s/access.log peer;
  client_body_temp_path %(d)s/b; proxy_temp_path %(d)s/p;
  fastcgi_temp_path %(d)s/f; uwsgi_temp_path %(d)s/u; scgi_temp_path %(d)s/s;
  server {
    listen 127.0.0.1:%(port)d ssl;
    listen 127.0.0.1:%(kport)d ssl;
    ssl_certificate %(d)s/cert.pem;
    ssl_certificate_key %(d)s/key.pem;
    location /api/ {
      proxy_pass http://127.0.0.1:%(up)d/;
      proxy_http_version 1.1;
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:%(mport)d ssl;
    ssl_certificate %(d)s/cert.pem;
    ssl_certificate_key %(d)s/key.pem;
    location / {
      proxy_pass http://127.0.0.1:%(model)d;
      proxy_http_version 1.1;
      proxy_buffering off;
    }
  }
}
""" % {"d": d, "port": cls.ng_port, "kport": cls.ng_keepalive_port, "up": cls.up.port,
       "mport": cls.ng_model_port,
       "model": cls.m.ports["secure"]})
        cls.nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", os.path.join(d, "nginx.conf")],
                                     stderr=subprocess.PIPE, text=True)

        def up():
            try:
                socket.create_connection(("127.0.0.1", cls.ng_port), timeout=1).close()
                return True
            except OSError:
                return None
        assert wait_for(up, 10), cls.nginx.stderr
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port, workers=1)
        assert wait_for(lambda: b"blind/m4" in cls.p.request("GET", "/v1/models")[2], 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()
        cls.nginx.terminate()
        cls.nginx.wait(30)
        cls.silent.close()
        cls.up.stop()
        cls.tmp.cleanup()

    def chat(self, model):
        return self.p.request("POST", "/v1/chat/completions",
                              {"model": model, "messages": []})

    def access(self):
        with open(os.path.join(self.dir, "access.log")) as f:
            return f.read().splitlines()

    def test_a_peer_signed_by_its_ca_file_is_served_under_its_base_path(self):
        for model in ("trusted/m1", "named/m2"):
            status, _, body = self.chat(model)
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 3)
            self.assertEqual(json.loads(self.up.request("GET", "/stats")[2])["last_path"],
                             "/v1/chat/completions")
        # nginx logs a request after its response is sent: wait for them.
        lines = wait_for(lambda: (lambda l: l if len(l) >= 2 else None)(
            self.access()), 10) or self.access()
        self.assertTrue(any(l.endswith("POST /api/v1/chat/completions HTTP/1.1")
                            for l in lines), lines)
        # The name is sent as SNI (an IP address is not).
        self.assertTrue(any(" localhost POST /api/" in l for l in lines), lines)
        # The connection is kept and used again.
        before = len(self.access())
        self.assertEqual(self.chat("trusted/m1")[0], 200)
        self.assertEqual(self.chat("trusted/m1")[0], 200)
        last = wait_for(lambda: (lambda l: l if len(l) >= 2 else None)(
            self.access()[before:]), 10) or self.access()[before:]
        conns = {l.split()[0] for l in last}
        self.assertEqual(len(last), 2, last)
        self.assertEqual(len(conns), 1, last)

    def test_a_model_behind_https_is_health_checked_and_served_over_tls(self):
        status, _, body = self.chat("secure")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 2)
        self.assertEqual(self.m.model("secure").state, pb.MODEL_STATE_READY)
        # Without its CA, the health check's handshake fails: the start
        # fails, and says why.
        status, _, body = self.chat("untrusted")
        self.assertGreaterEqual(status, 500, body)
        failure = wait_for(lambda: self.m.model("untrusted").failure.message, 10)
        self.assertIn("last check: TLS handshake failed: ", failure)
        self.assertIn("certificate", failure)

    def test_a_selector_targets_a_peers_model(self):
        status, _, body = self.chat("via-peer")
        self.assertEqual(status, 200, body)
        sent = json.loads(json.loads(self.up.request("GET", "/stats")[2])["last_body"])
        self.assertEqual(sent["model"], "m1")  # The peer's name for it.

    def test_a_handshake_that_never_ends_is_a_502_after_connect_and_tls_handshake(self):
        # The peer takes the TCP connection and says nothing: the request
        # ends when timeouts.connect + timeouts.tlsHandshake (1 s + 2 s)
        # have passed, not after the default connect timeout (which alone
        # would be 30 s, beyond this client's wait).
        status, _, body = self.p.request("POST", "/v1/chat/completions",
                                         {"model": "silent/m5", "messages": []},
                                         timeout=25)
        self.assertEqual(status, 502, body)
        self.assertIn("timed out after 3s (timeouts.connect + timeouts.tlsHandshake)",
                      json.loads(body)["error"]["message"])

    def test_keepalive_sets_the_upstream_sockets_keepalive_timer(self):
        # "named" has timeouts.keepalive: 15 (its own nginx port); "trusted"
        # the default, 30. ss shows a socket's keepalive timer: the time
        # left to the first probe of an idle connection.
        self.assertEqual(self.chat("named/m2")[0], 200)
        self.assertEqual(self.chat("trusted/m1")[0], 200)

        def seconds_left(port):
            out = subprocess.run(
                ["ss", "-tnoH", "state", "established", "dst", "127.0.0.1:%d" % port],
                capture_output=True, text=True, timeout=10).stdout
            lines = [l for l in out.splitlines() if l.strip()]
            self.assertTrue(lines, "no connection to port %d" % port)
            left = []
            for line in lines:
                m = re.search(r"timer:\(keepalive,(?:(\d+)min)?(?:(\d+)sec)?", line)
                self.assertIsNotNone(m, line)
                left.append(int(m.group(1) or 0) * 60 + int(m.group(2) or 0))
            return left
        for left in seconds_left(self.ng_keepalive_port):
            self.assertLessEqual(left, 15)
        # The port is shared with other peers' connections, idle for longer:
        # the one just used has most of the default's 30 s left.
        self.assertGreater(max(seconds_left(self.ng_port)), 15)
        self.assertLessEqual(max(seconds_left(self.ng_port)), 30)

    def test_a_peer_the_system_roots_do_not_sign_is_a_502_that_says_why(self):
        status, _, body = self.chat("system/m3")
        self.assertEqual(status, 502, body)
        message = json.loads(body)["error"]["message"]
        self.assertIn("TLS handshake with the upstream", message)
        self.assertIn("certificate", message)

    def test_insecure_skip_verify_is_explicit_and_warned(self):
        self.assertEqual(self.chat("blind/m4")[0], 200)
        check = subprocess.run([runfile("server/modelmanager"), "--check", "--config",
                                self.m.config_path], capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("peers.blind.tls.insecureSkipVerify: the upstream's certificate "
                      "is not checked", check.stderr)

    def test_llama_swaps_openrouter_peer_passes_check(self):
        # llama-swap's config.example.yaml has this peer.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.yaml")
            with open(path, "w") as f:
                f.write("models:\n  a:\n    cmd: /bin/true ${PORT}\n"
                        "peers:\n  openrouter:\n    proxy: https://openrouter.ai/api\n"
                        "    apiKey: sk-x\n    models: [z-ai/glm-4.7]\n"
                        "    timeouts: {connect: 5, keepalive: 30, responseHeader: 60,"
                        " tlsHandshake: 10, expectContinue: 1, idleConn: 90}\n")
            check = subprocess.run([runfile("server/modelmanager"), "--check", "--config",
                                    path], capture_output=True, text=True, timeout=30)
            self.assertEqual(check.returncode, 0, check.stderr)
            self.assertNotIn("peers.openrouter", check.stderr)


if __name__ == "__main__":
    junit.main()
