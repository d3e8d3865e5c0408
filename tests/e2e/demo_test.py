"""`make demo` as a user runs it: tools/demo.sh on examples/demo.yaml, real
clients through the proxy, the manager's events on the terminal, and Ctrl-C
(SIGINT to the whole foreground process group) leaving nothing running."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from tests.manager.manager_proc import free_port, free_port_block
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for


def sse_text(body):
    text = ""
    for event in body.decode().split("\n\n"):
        if event.startswith("data: {"):
            choice = json.loads(event[6:])["choices"]
            text += (choice[0].get("delta", {}).get("content") or "") if choice else ""
    return text


def our_processes(root):
    """Processes (other than this one) running a binary from `root`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if root in cmd and any(b in cmd for b in
                               ("modelmanager", "modelproxy", "fake_upstream", "mpctl")):
            found.append(cmd)
    return found


class DemoTest(unittest.TestCase):
    def test_demo_serves_swaps_shows_events_and_ctrl_c_stops_everything(self):
        root = os.path.dirname(os.path.dirname(runfile("tools/demo.sh")))
        tmp = tempfile.mkdtemp()
        # The demo file as shipped, on ports free here.
        config = os.path.join(tmp, "demo.yaml")
        with open(runfile("examples/demo.yaml")) as f, open(config, "w") as out:
            # A block of free ports, one per model of the file (startPort,
            # startPort+1, ...), out of the way of other tests' ports.
            out.write("startPort: %d\n" % free_port_block(16) + f.read())
        proxy = "127.0.0.1:%d" % free_port()
        manager = "127.0.0.1:%d" % free_port()
        env = dict(os.environ, MODELPLANE_BIN=root, MODELPLANE_PROXY=proxy,
                   MODELPLANE_MANAGER=manager, MODELPLANE_LOG_DIR=tmp)
        demo = subprocess.Popen(["bash", runfile("tools/demo.sh"), config], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
        reader.start()
        try:
            self.assertTrue(wait_for(lambda: any("Events (Ctrl-C" in l for l in lines), 60),
                            "".join(lines))
            banner = "".join(lines)
            self.assertIn("http://%s/v1" % proxy, banner)
            # The web UI's address first, and it answers.
            first = banner.split("modelplane is running on")[1].splitlines()[1]
            self.assertEqual(first.split(), ["web", "UI", "http://%s/ui/" % proxy])
            out = subprocess.run(["curl", "-sS", "--compressed", "http://%s/ui/" % proxy],
                                 capture_output=True, text=True, timeout=30)
            self.assertIn("<title>modelplane</title>", out.stdout)
            self.assertIn("mpctl --manager %s watch" % manager, banner)

            # The printed commands work as printed (watch follows for ever:
            # its first lines are enough; grpcurl only where it is installed).
            tried = banner.split("Try, in another terminal:\n")[1].split("\n\n")[0]
            commands = tried.replace("\\\n", "").strip().splitlines()
            self.assertEqual(len(commands), 5, tried)
            for command in commands:
                command = command.split("  #")[0].strip()
                if command.startswith("grpcurl") and shutil.which("grpcurl") is None:
                    continue
                if command.endswith(" watch"):
                    command = "timeout 3 " + command
                out = subprocess.run(["bash", "-c", command], capture_output=True,
                                     text=True, timeout=60)
                self.assertIn(out.returncode, (0, 124), (command, out.stderr))
                self.assertTrue(out.stdout.strip(), command)
                if "chat/completions" in command:
                    self.assertIn("data: [DONE]", out.stdout)
                if "/v1/models" in command:
                    self.assertEqual(len(json.loads(out.stdout)["data"]), 3, out.stdout)

            def post(body):
                conn = http.client.HTTPConnection(proxy.split(":")[0],
                                                  int(proxy.split(":")[1]), timeout=60)
                conn.request("POST", "/v1/" + body.pop("route"), json.dumps(body))
                r = conn.getresponse()
                return r.status, r.read()

            # An alias, streamed: the model loads (comments), then streams.
            status, body = post({"route": "chat/completions", "model": "gpt-4o-mini",
                                 "stream": True, "messages": []})
            self.assertEqual(status, 200, body)
            self.assertIn(b": loading qwen-chat", body)
            self.assertEqual(sse_text(body), "".join("tok%d " % i for i in range(24)))
            status, body = post({"route": "embeddings", "model": "nomic-embed", "input": "x"})
            self.assertEqual(status, 200, body)
            # The other chat model swaps qwen out; the persistent embedder stays.
            status, body = post({"route": "chat/completions", "model": "llama-chat",
                                 "messages": []})
            self.assertEqual(status, 200, body)
            ls = subprocess.run([os.path.join(root, "client/mpctl"), "--manager", manager,
                                 "--json", "ls"], capture_output=True, text=True, check=True)
            states = {m["id"]: m.get("state") for m in json.loads(ls.stdout)["models"]}
            self.assertEqual(states, {"qwen-chat": "MODEL_STATE_STOPPED",
                                      "llama-chat": "MODEL_STATE_READY",
                                      "nomic-embed": "MODEL_STATE_READY"}, ls.stdout)
            # The terminal shows the manager's events as they happen.
            self.assertTrue(wait_for(lambda: any(
                "llama-chat READY" in l for l in lines), 10), "".join(lines))
            self.assertTrue(any("qwen-chat STOPPING" in l for l in lines), "".join(lines))
        finally:
            # Ctrl-C: the terminal signals the whole foreground process group.
            os.killpg(demo.pid, signal.SIGINT)
            code = demo.wait(60)
            reader.join(10)
        # Ctrl-C is how the demo ends: exit 0 (make prints no "Error 130").
        self.assertEqual(code, 0, "".join(lines))
        self.assertIn("demo: stopped", "".join(lines))
        self.assertTrue(wait_for(lambda: not our_processes(root), 10), our_processes(root))

    def start_demo(self, env_extra):
        root = os.path.dirname(os.path.dirname(runfile("tools/demo.sh")))
        tmp = tempfile.mkdtemp()
        config = os.path.join(tmp, "demo.yaml")
        with open(runfile("examples/demo.yaml")) as f, open(config, "w") as out:
            out.write("startPort: %d\n" % free_port_block(16) + f.read())
        env = dict(os.environ, MODELPLANE_BIN=root, MODELPLANE_LOG_DIR=tmp,
                   MODELPLANE_MANAGER="127.0.0.1:%d" % free_port())
        env.pop("MODELPLANE_PROXY", None)
        env.update(env_extra)
        demo = subprocess.Popen(["bash", runfile("tools/demo.sh"), config], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True).start()
        return root, demo, lines

    def test_a_port_in_use_is_never_taken_for_the_demos_own(self):
        # Another program listens where the proxy would.
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        taken = "127.0.0.1:%d" % busy.getsockname()[1]
        try:
            # Asked for explicitly: a clear error, nothing left running.
            root, demo, lines = self.start_demo({"MODELPLANE_PROXY": taken})
            self.assertEqual(demo.wait(60), 1, "".join(lines))
            time.sleep(0.2)  # The reader thread drains the pipe.
            self.assertIn("demo: %s (proxy (MODELPLANE_PROXY)) is in use by another "
                          "program" % taken, "".join(lines))
            self.assertNotIn("modelplane is running", "".join(lines))
            self.assertTrue(wait_for(lambda: not our_processes(root), 10))
        finally:
            busy.close()
        # The default (127.0.0.1:8080) taken: the demo moves and says so.
        default = socket.socket()
        default.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            default.bind(("127.0.0.1", 8080))
            default.listen(8)
        except OSError:
            pass  # Someone else has it: taken all the same.
        try:
            root, demo, lines = self.start_demo({})
            self.assertTrue(wait_for(lambda: any("Events (Ctrl-C" in l for l in lines), 60),
                            "".join(lines))
            banner = "".join(lines)
            self.assertIn("demo: 127.0.0.1:8080 is in use by another program; the proxy "
                          "(MODELPLANE_PROXY) listens on 127.0.0.1:", banner)
            addr = re.search(r"proxy \(OpenAI API\)\s+http://([\d.:]+)/v1", banner).group(1)
            self.assertNotEqual(addr, "127.0.0.1:8080")
            host, port = addr.split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/v1/models")
            ids = sorted(m["id"] for m in json.loads(conn.getresponse().read())["data"])
            self.assertEqual(ids, ["llama-chat", "nomic-embed", "qwen-chat"])
            # The chat example names a chat model.
            self.assertIn('"model":"llama-chat"', banner)
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            code = demo.wait(60)
            default.close()
        self.assertEqual(code, 0, "".join(lines))
        self.assertTrue(wait_for(lambda: not our_processes(root), 10), our_processes(root))


if __name__ == "__main__":
    junit.main()
