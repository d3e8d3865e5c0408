"""Starts tools/fake_upstream as a real process for tests.

    with FakeUpstream("--ready-after-ms", "100") as up:
        status, headers, body = up.request("GET", "/health")

Output is collected on a thread so that the pipes never fill; `wait_output`
waits (bounded) for a line to appear. `wait_for` polls a condition with a
deadline instead of sleeping a fixed time.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time


def runfile(path):
    """Absolute path of a data dependency, e.g. 'tools/fake_upstream/fake_upstream'."""
    base = os.environ.get("TEST_SRCDIR")
    if base:
        return os.path.join(base, os.environ.get("TEST_WORKSPACE", "modelplane"), path)
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "bazel-bin", path)


def use_own_runfiles(main_file):
    """Under `bazel run` a benchmark's binaries are its own runfiles: where
    runfile() looks (call it before starting anything)."""
    if "TEST_SRCDIR" in os.environ:
        return
    here = os.path.abspath(main_file)
    at = here.find(".runfiles" + os.sep)
    os.environ["TEST_SRCDIR"] = (os.environ.get("RUNFILES_DIR")
                                 or (here[:at + len(".runfiles")] if at >= 0
                                     else here + ".runfiles"))


def under_sanitizer():
    """Whether the binaries under test are built with ASan/UBSan (`make
    test-asan`): there RSS measures the sanitizer's allocator (its
    quarantine, its shadow memory), so memory figures are not asserted."""
    return bool(os.environ.get("MODELPLANE_SANITIZER"))


def wait_for(predicate, timeout=10.0, interval=0.005):
    """Polls `predicate` until it returns a true value; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class FakeUpstream:
    BINARY = "tools/fake_upstream/fake_upstream"

    def __init__(self, *args, env=None, wait_listening=True):
        self.args = [runfile(self.BINARY), "--port", "0"] + list(args)
        self.env = env
        self.wait_listening = wait_listening
        self.proc = None
        self.port = None
        self._lines = []
        self._lock = threading.Lock()
        self._readers = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, start_new_session=True)
        for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            t = threading.Thread(target=self._pump, args=(stream, tag), daemon=True)
            t.start()
            self._readers.append(t)
        if self.wait_listening:
            line = self.wait_output(r"^listening on 127\.0\.0\.1:(\d+)$")
            if line is None:
                raise RuntimeError("fake_upstream did not listen: %r" % self.lines())
            self.port = int(line.rsplit(":", 1)[1])

    def _pump(self, stream, tag):
        for raw in iter(stream.readline, b""):
            with self._lock:
                self._lines.append((tag, raw.decode(errors="replace").rstrip("\n")))
        stream.close()

    def lines(self, tag=None):
        with self._lock:
            return [l for t, l in self._lines if tag is None or t == tag]

    def wait_output(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        return wait_for(lambda: next((l for l in self.lines() if rx.search(l)), None), timeout)

    def output_closed(self, timeout=10.0):
        """True once both pipes reached EOF (every holder of them is gone)."""
        for t in self._readers:
            t.join(timeout)
        return not any(t.is_alive() for t in self._readers)

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def stats(self):
        status, _, body = self.request("GET", "/stats")
        assert status == 200, status
        return json.loads(body)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        for t in self._readers:
            t.join(10)
