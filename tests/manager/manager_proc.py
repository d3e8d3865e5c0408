"""Runs the real modelmanager binary for end-to-end tests.

    with ManagerProcess({"a": [], "b": ["--ready-after-ms", "200"]}) as m:
        stub = m.stub()            # modelplane.v1.ModelManager
        stub.Start(pb.StartRequest(model="a"), timeout=10)

Each model is a fake_upstream on a free port of its own (written into the
config, so no ${PORT} guessing). The manager listens on 127.0.0.1:0; the port
is read from its log.
"""

import os
import queue
import random
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading

import grpc

from modelplane.v1 import model_manager_pb2 as pb
from modelplane.v1 import model_manager_pb2_grpc as pb_grpc
from tools.testing.fake_upstream_proc import runfile, wait_for


def free_port():
    """A port free now, below the ephemeral range (free_port_block)."""
    return free_port_block(1)


def free_port_block(n):
    """The first of n consecutive ports that are free now (a config's
    startPort). Below the kernel's ephemeral range, so that the ports other
    tests running alongside get from bind(0) or connect() cannot land in it."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError):
        pass
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, low - n))
        held = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no block of %d free ports" % n)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # ProcessLookupError: reaped between the open and the read.
        return False


class ManagerProcess:
    def __init__(self, models, extra_yaml="", flags=(), model_yaml=None, proxies=None,
                 host="127.0.0.1", port=0, env=None):
        """models: id -> list of fake_upstream flags. model_yaml: id -> extra
        YAML lines for that model (indented by the caller's 4 spaces).
        proxies: id -> its `proxy` URL with {port} for its port (default
        http://HOST:{port}). host: the loopback address the manager and its
        models listen on (a "node": 127.0.0.2, 127.0.0.3, ...); port: the
        manager's (0: any). env: variables set for the manager (and so its
        models) over the test's own."""
        self.env = env or {}
        self.host = host
        self.listen_port = port
        self.proxies = proxies or {}
        self.tmp = tempfile.TemporaryDirectory()
        self.config_path = os.path.join(self.tmp.name, "config.yaml")
        self.ports = {m: free_port() for m in models}
        self.models = models
        self.model_yaml = model_yaml or {}
        self.extra_yaml = extra_yaml
        self.flags = list(flags)
        self.write_config()
        self.proc = None
        self.port = None
        self._log = []
        self._lock = threading.Lock()

    def config_text(self, models=None, model_yaml=None, extra_yaml=None):
        models = self.models if models is None else models
        model_yaml = self.model_yaml if model_yaml is None else model_yaml
        lines = [extra_yaml if extra_yaml is not None else self.extra_yaml, "models:"]
        binary = runfile("tools/fake_upstream/fake_upstream")
        for m, fl in models.items():
            port = self.ports.setdefault(m, free_port())
            cmd = " ".join(shlex.quote(a) for a in
                           [binary, "--host", self.host, "--port", str(port),
                            "--model", m] + fl)
            cmd = "'%s'" % cmd.replace("'", "''")  # A YAML single-quoted scalar.
            lines += ["  %s:" % m, "    cmd: %s" % cmd,
                      "    proxy: " + self.proxies.get(
                          m, "http://%s:{port}" % self.host).format(port=port)]
            lines += model_yaml.get(m, [])
        return "\n".join(lines) + "\n"

    def write_config(self, **kw):
        with open(self.config_path, "w") as f:
            f.write(self.config_text(**kw))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        with self._lock:
            self._log = []  # A restart's log is its own.
        self.proc = subprocess.Popen(
            [runfile("server/modelmanager"), "--config", self.config_path,
             "--listen", "%s:%d" % (self.host, self.listen_port)] + self.flags,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **self.env))
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_log(r"modelmanager listening on %s:(\d+)" % re.escape(self.host))
        if line is None:
            raise RuntimeError("modelmanager did not start: %s" % self.log())
        self.port = int(re.search(r"%s:(\d+)" % re.escape(self.host), line).group(1))
        self.channel = grpc.insecure_channel("%s:%d" % (self.host, self.port))

    def _pump(self):
        for line in self.proc.stderr:
            with self._lock:
                self._log.append(line.rstrip("\n"))

    def log(self):
        with self._lock:
            return list(self._log)

    def wait_log(self, pattern, timeout=20):
        rx = re.compile(pattern)
        return wait_for(lambda: next((l for l in self.log() if rx.search(l)), None),
                        timeout)

    def stub(self):
        return pb_grpc.ModelManagerStub(self.channel)

    def model(self, name):
        return self.stub().GetModel(pb.GetModelRequest(model=name), timeout=10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


class AcquireStream:
    """One Acquire stream: requests go in a queue, responses are collected."""

    def __init__(self, stub, client_id="test-proxy"):
        self.requests = queue.Queue()
        self.responses = []
        self.cond = threading.Condition()
        self.call = stub.Acquire(iter(self.requests.get, None))
        self.requests.put(pb.AcquireRequest(hello=pb.AcquireRequest.Hello(client_id=client_id)))
        self.error = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                with self.cond:
                    self.responses.append(r)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            self.error = e

    def acquire(self, model, request_id="r1", priority=0):
        self.requests.put(pb.AcquireRequest(acquire=pb.AcquireRequest.Acquire(
            model=model, request_id=request_id, priority=priority)))

    def release(self, model, lease_id):
        self.requests.put(pb.AcquireRequest(release=pb.AcquireRequest.Release(
            model=model, lease_id=lease_id)))

    def wait(self, kind, model, timeout=20):
        """The first response of `kind` (granted, revoked, ...) for model."""
        def find():
            with self.cond:
                for r in self.responses:
                    if r.WhichOneof("kind") == kind and getattr(r, kind).model == model:
                        return getattr(r, kind)
            return None
        return wait_for(find, timeout)

    def close(self):
        self.requests.put(None)

    def cancel(self):
        self.call.cancel()


def scrape(port):
    """modelmanager's /metrics on `port`, parsed by Prometheus's own parser:
    (name, sorted labels) -> value."""
    import urllib.request  # pylint: disable=import-outside-toplevel
    from prometheus_client.parser import text_string_to_metric_families  # pylint: disable=import-outside-toplevel

    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))
