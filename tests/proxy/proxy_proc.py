"""Runs the real modelproxy binary for end-to-end tests.

    p = ProxyProcess(manager.port, workers=2, flags=["--access-log"])
    status, headers, body = p.request("POST", "/v1/completions", {"model": "a"})
    p.stop()
    p.log()  # Its stderr lines (the access log among them).

It listens on a free port and is ready once it logged that it listens. Its
stderr is read by a thread all along, so a chatty proxy never blocks on a
full pipe.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading

from tests.manager.manager_proc import free_port
from tools.testing.fake_upstream_proc import runfile, wait_for


class ProxyProcess:
    def __init__(self, manager_port, workers=2, flags=(), host="127.0.0.1"):
        """`host`: the address to listen on (requests go to 127.0.0.1).
        `manager_port`: the manager's port on 127.0.0.1, or a list of
        manager addresses (host:port), one node each."""
        self.port = free_port()
        if isinstance(manager_port, (list, tuple)):
            managers = [f for m in manager_port for f in ("--manager", m)]
        else:
            managers = ["--manager", "127.0.0.1:%d" % manager_port]
        self.proc = subprocess.Popen(
            [runfile("proxy/modelproxy"), "--listen", "%s:%d" % (host, self.port)]
            + managers + ["--workers", str(workers)] + list(flags),
            stderr=subprocess.PIPE, text=True)
        self._lines = []
        self._lock = threading.Lock()
        # Up to the listening line (the link may say it connected first).
        while True:
            line = self.proc.stderr.readline()
            assert line, "modelproxy exited: %s" % "\n".join(self._lines)
            self._lines.append(line.rstrip("\n"))
            if "modelproxy listening on" in line:
                break
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def log(self):
        """Its stderr so far (all of it once stop() returned)."""
        with self._lock:
            return list(self._lines)

    def wait_log(self, pattern, timeout=20):
        rx = re.compile(pattern)
        return wait_for(lambda: next((l for l in self.log() if rx.search(l)), None),
                        timeout)

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
            try:
                code = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                # Where it stuck: its threads' stacks, then its log.
                stacks = subprocess.run(
                    ["gdb", "-p", str(self.proc.pid), "-batch", "-ex",
                     "thread apply all bt 8"], capture_output=True, text=True,
                    timeout=60).stdout if os.path.exists("/usr/bin/gdb") else ""
                self.proc.kill()
                self.proc.wait()
                self._pump.join(10)
                raise AssertionError("modelproxy did not stop within 20 s:\n%s\n%s"
                                     % ("\n".join(self.log())[-4000:], stacks[-8000:]))
            self._pump.join(10)
            if code != 0:
                raise AssertionError("modelproxy exited with %d: %s"
                                     % (code, "\n".join(self.log())[-4000:]))
            # Every worker loop closed cleanly: nothing left for LoopThread
            # to close on its owners' behalf (common/loop_thread.cc).
            forgotten = [l for l in self.log() if "still open at the loop" in l]
            if forgotten:
                raise AssertionError("modelproxy left libuv handles open: %s"
                                     % forgotten)
        self._pump.join(10)
