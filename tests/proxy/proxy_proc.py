"""Runs the real modelproxy binary for end-to-end tests.

    p = ProxyProcess(manager.port, workers=2, flags=["--access-log"])
    status, headers, body = p.request("POST", "/v1/completions", {"model": "a"})
    p.stop()

It listens on a free port and is ready once it logged that it listens.
"""

import http.client
import json
import signal
import subprocess

from tests.manager.manager_proc import free_port
from tools.testing.fake_upstream_proc import runfile


class ProxyProcess:
    def __init__(self, manager_port, workers=2, flags=()):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [runfile("proxy/modelproxy"), "--listen", "127.0.0.1:%d" % self.port,
             "--manager", "127.0.0.1:%d" % manager_port, "--workers", str(workers)]
            + list(flags),
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "modelproxy listening on" in line, line

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, dict):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def stop(self):
        """SIGTERM; the proxy must drain and exit 0 (a sanitizer report at
        exit, under --config=asan, makes that 1)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(20)
            if code != 0:
                raise AssertionError("modelproxy exited with %d: %s"
                                     % (code, self.proc.stderr.read()[-4000:]))
