"""modelplane, the one-host binary (manager and proxy in one process), run as a
real process: llama-swap's command line, one set of signals, one log, exit
codes, and nothing left behind."""

import glob
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

BINARY = runfile("cmd/modelplane")
FAKE = runfile("tools/fake_upstream/fake_upstream")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_yaml(ids, tag):
    out = "models:\n"
    for i in ids:
        out += (f"  {i}:\n"
                f"    cmd: {FAKE} --port ${{PORT}} --model {i} --tokens 4\n"
                f"    proxy: http://127.0.0.1:${{PORT}}\n"
                f"    env: [MODELPLANE_TEST_TAG={tag}]\n")
    return out


def tagged(tag):
    """The processes whose environment carries MODELPLANE_TEST_TAG=tag: the
    models one Stack started, wherever they were reparented."""
    found = set()
    needle = ("MODELPLANE_TEST_TAG=" + tag).encode()
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.add(int(environ.split("/")[2]))
        except OSError:
            continue
    return found


class Stack:
    """A modelplane process on a config in a temporary directory."""

    def __init__(self, ids, extra_yaml="", flags=()):
        self.tmp = tempfile.TemporaryDirectory()
        self.tag = os.path.basename(self.tmp.name)
        self.runtime = os.path.join(self.tmp.name, "run")
        os.mkdir(self.runtime, 0o700)
        self.config = os.path.join(self.tmp.name, "config.yaml")
        self.write(ids, extra_yaml)
        self.port = free_port()
        self.flags = list(flags)
        self.proc = None
        self.err = []

    def write(self, ids, extra_yaml=""):
        with open(self.config + ".new", "w") as f:
            f.write(model_yaml(ids, self.tag) + extra_yaml)
        os.replace(self.config + ".new", self.config)

    def start(self, listen=None):
        env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": self.runtime}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        args = [BINARY, "-config", self.config, "-listen",
                listen or f"127.0.0.1:{self.port}"] + self.flags
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self):
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_log(self, pattern, timeout=20):
        return wait_for(lambda: any(re.search(pattern, l) for l in self.err), timeout)

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=json.dumps(body) if body else None,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def __enter__(self):
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.tmp.cleanup()


class OneCommandTest(unittest.TestCase):
    def test_make_run_starts_modelplane_on_the_config(self):
        # `make run CONFIG=... LISTEN=...` is tools/run.sh after the build;
        # with MODELPLANE_BIN (the tree holding cmd/modelplane) it builds
        # nothing and execs modelplane on the config: here, this test's
        # runfiles. Ctrl-C (SIGINT) stops it and the model it started.
        with tempfile.TemporaryDirectory() as tmp:
            tag = os.path.basename(tmp)
            config = os.path.join(tmp, "config.yaml")
            with open(config, "w") as f:
                f.write(model_yaml(["m"], tag))
            runtime = os.path.join(tmp, "run")
            os.mkdir(runtime, 0o700)
            port = free_port()
            env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": runtime,
                   "MODELPLANE_BIN": os.path.dirname(os.path.dirname(BINARY))}
            for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
                if k in os.environ:
                    env[k] = os.environ[k]
            proc = subprocess.Popen(["bash", runfile("tools/run.sh"), config,
                                     f"127.0.0.1:{port}"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True)
            try:
                self.assertIn(f"web UI http://127.0.0.1:{port}/ui/", proc.stdout.readline())

                def chat():
                    try:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        conn.request("POST", "/v1/chat/completions",
                                     json.dumps({"model": "m", "messages": []}),
                                     {"content-type": "application/json"})
                        r = conn.getresponse()
                        return r.read() if r.status == 200 else None
                    except OSError:
                        return None
                self.assertIn(b"tok", wait_for(chat, 30) or b"")
                self.assertTrue(tagged(tag))
                proc.send_signal(signal.SIGINT)
                self.assertEqual(proc.wait(60), 0)
                self.assertTrue(wait_for(lambda: not tagged(tag), 30), tagged(tag))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)

    def test_version_and_help(self):
        out = subprocess.run([BINARY, "--version"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(runfile("VERSION")) as f:
            version = f.read().strip()
        self.assertRegex(out.stdout, r"^modelplane " + re.escape(version) +
                         r" \(commit \S+, built \S+\)\n$")
        out = subprocess.run([BINARY, "-version"], capture_output=True,
                             text=True, timeout=30)
        self.assertTrue(out.stdout.startswith("modelplane "), out.stdout)
        out = subprocess.run([BINARY, "--help"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0)
        for flag in ("--config", "--config-dir", "--listen", "--watch-config",
                     "--drain-seconds", "--manager-metrics-listen"):
            self.assertIn(flag, out.stdout)
        # Its manager is its own: no flag points the proxy elsewhere.
        self.assertNotIn("--manager ", out.stdout)

    def test_bad_flags_and_configs_exit_2_naming_the_problem(self):
        cases = [
            ([], "--config FILE or --config-dir DIR is required"),
            (["--config", "/x.yaml", "--manager", "127.0.0.1:1"],
             "unknown flag --manager"),
            (["--config", "/x.yaml", "--listen", "nowhere"], "--listen must be"),
            (["--config", "/x.yaml", "stray"], "unexpected argument 'stray'"),
        ]
        for args, message in cases:
            out = subprocess.run([BINARY] + args, capture_output=True, text=True,
                                 timeout=30)
            self.assertEqual(out.returncode, 2, args)
            self.assertIn(message, out.stderr, args)
        with Stack(["a"]) as s:
            pass
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "bad.yaml")
            with open(bad, "w") as f:
                f.write("models:\n  a:\n    proxy: http://127.0.0.1:1\n")
            out = subprocess.run([BINARY, "--config", bad, "--listen",
                                  f"127.0.0.1:{free_port()}"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 2)
            self.assertIn("models.a: missing required key 'cmd'", out.stderr)

    def test_serves_reloads_on_sighup_and_stops_everything_on_sigterm(self):
        with Stack(["a"]) as s:
            self.assertTrue(s.wait_log(r"modelplane listening on 127\.0\.0\.1:%d" % s.port),
                            s.err)
            status, headers, body = s.request(
                "POST", "/v1/chat/completions",
                {"model": "a", "messages": [{"role": "user", "content": "hi"}]})
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["model"], "a")
            # Its one node is "local", not the socket's path.
            self.assertEqual(headers.get("X-Modelplane-Node"), "local")
            status, _, body = s.request("GET", "/running")
            running = json.loads(body)["running"]
            self.assertEqual([m["model"] for m in running], ["a"])
            self.assertEqual(len(tagged(s.tag)), 1)
            # The manager's socket is in the private directory (0700).
            dirs = glob.glob(os.path.join(s.runtime, "modelplane-*"))
            self.assertEqual(len(dirs), 1)
            self.assertEqual(os.stat(dirs[0]).st_mode & 0o777, 0o700)
            self.assertTrue(os.path.exists(os.path.join(dirs[0], "manager.sock")))

            # SIGHUP reloads the config, as llama-swap's does.
            s.write(["a", "b"])
            s.proc.send_signal(signal.SIGHUP)

            def has_b():
                _, _, body = s.request("GET", "/v1/models")
                return "b" in [m["id"] for m in json.loads(body)["data"]]
            self.assertTrue(wait_for(has_b, 20), s.err)
            self.assertIsNone(s.proc.poll())

            s.proc.send_signal(signal.SIGTERM)
            self.assertEqual(s.proc.wait(60), 0, s.err)
            self.assertTrue(s.wait_log(r"^\S+ info stopped$", 5), s.err)
            self.assertEqual(tagged(s.tag), set())
            self.assertEqual(os.listdir(s.runtime), [])
            # One log: the manager's lines and the proxy's, one format.
            text = "\n".join(s.err)
            self.assertIn("modelmanager listening on unix:", text)
            self.assertIn("model a READY", text)
            self.assertIn("reloaded", text)
            self.assertIn("Terminated: draining", text)
            for line in s.err:
                self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\S+Z (debug|info|warn|error) ")

    def test_json_logs_carry_the_proxys_lines_too(self):
        with Stack(["a"], flags=["--log-format", "json"]) as s:
            self.assertTrue(s.wait_log(r'"modelplane listening on'), s.err)
            s.proc.send_signal(signal.SIGINT)
            self.assertEqual(s.proc.wait(60), 0, s.err)
            msgs = [json.loads(l)["msg"] for l in s.err]
            self.assertTrue(any(m.startswith("modelmanager listening") for m in msgs))
            self.assertTrue(any(m.startswith("modelplane listening") for m in msgs))

    def test_a_taken_port_exits_1_before_any_model_starts(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            s = Stack(["a"], extra_yaml="hooks:\n  on_startup:\n    preload: [a]\n")
            with s.start(listen=f"127.0.0.1:{port}"):
                self.assertEqual(s.proc.wait(60), 1, s.err)
                self.assertTrue(s.wait_log(r"cannot bind 127\.0\.0\.1:%d" % port, 5),
                                s.err)
                # Checked before the manager starts: nothing ran.
                self.assertFalse(any("modelmanager listening" in l for l in s.err),
                                 s.err)
                self.assertEqual(tagged(s.tag), set())
                self.assertEqual(os.listdir(s.runtime), [])

    def test_listen_colon_port_is_every_address_and_says_so(self):
        port = free_port()
        s = Stack(["a"])
        s.port = port
        with s.start(listen=f":{port}"):
            self.assertTrue(s.wait_log(r"modelplane listening on 0\.0\.0\.0:%d" % port),
                            s.err)
            self.assertTrue(s.wait_log(r"reachable by every host on the network"), s.err)
            status, _, _ = s.request("GET", "/health")
            self.assertEqual(status, 200)
            s.proc.send_signal(signal.SIGTERM)
            self.assertEqual(s.proc.wait(60), 0, s.err)


class FlagsAndLogsTest(unittest.TestCase):
    def test_a_bad_certificate_exits_2_before_any_model_starts(self):
        s = Stack(["a"], extra_yaml="hooks:\n  on_startup:\n    preload: [a]\n",
                  flags=["-tls-cert-file", "/nonexistent/cert.pem",
                         "-tls-key-file", "/nonexistent/key.pem"])
        with s.start():
            self.assertEqual(s.proc.wait(60), 2, s.err)
            self.assertTrue(s.wait_log(r"cannot use the certificate /nonexistent/cert.pem",
                                       5), s.err)
            self.assertFalse(any("STARTING" in l for l in s.err), s.err)
            self.assertEqual(tagged(s.tag), set())
            self.assertEqual(os.listdir(s.runtime), [])

    def test_localhost_json_logs_and_the_access_log_in_them(self):
        s = Stack(["a"], flags=["--log-format", "json", "--access-log"])
        with s.start(listen="localhost:%d" % s.port):
            self.assertTrue(s.wait_log(r'"modelplane listening on 127\.0\.0\.1:%d'
                                       % s.port), s.err)
            status, _, _ = s.request("GET", "/health")
            self.assertEqual(status, 200)
            self.assertTrue(s.wait_log(r'GET /health\\" 200', 5), s.err)
            s.proc.send_signal(signal.SIGTERM)
            self.assertEqual(s.proc.wait(60), 0, s.err)
            for line in s.err:
                json.loads(line)  # Every line, the access log's included.

    def test_help_says_the_tls_default_port(self):
        out = subprocess.run([BINARY, "-help"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0)
        self.assertIn("default :8080, or :8443 with TLS", out.stdout)


if __name__ == "__main__":
    junit.main()
