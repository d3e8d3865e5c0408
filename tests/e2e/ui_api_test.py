"""The web UI's HTTP API on a real stack (modelmanager, modelproxy, fake
models): /api/events (llama-swap's envelopes: the models' state as the
manager changes it, activity, the proxy's log), /logs and /logs/stream
(the proxy's log, the manager's, a model's output with its history),
/api/version, /api/models/load, and /ui/ itself as curl fetches it
(brotli and gzip, ETags, the Content-Security-Policy), with and without
API keys."""

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import threading
import unittest

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

from modelplane.v1 import model_manager_pb2 as pb


class Stream:
    """A streaming GET read on a thread of its own: `text` grows as the
    body arrives; `ended` once it is over."""

    def __init__(self, port, path, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.text = ""
        self.ended = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                with self._lock:
                    self.text += chunk.decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            pass
        self.ended = True

    def has(self, what, timeout=20):
        return wait_for(lambda: what in self.text, timeout)

    def events(self):
        """The llama-swap envelopes so far: (type, data parsed)."""
        out = []
        for block in self.text.split("\n\n"):
            lines = block.split("\n")
            if "event: message" not in lines:
                continue
            data = next(l[6:] for l in lines if l.startswith("data: "))
            env = json.loads(data)
            out.append((env["type"], json.loads(env["data"])))
        return out

    def close(self):
        # Shut first: the reading thread's read returns (a close alone
        # would wait for it).
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self._thread.join(10)
        self.conn.close()


def curl(*args):
    out = subprocess.run(["curl", "-sS"] + list(args), capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


class UiApiTest(unittest.TestCase):
    def test_events_logs_version_load_and_the_files(self):
        with ManagerProcess({"chat": ["--tokens", "4", "--ready-after-ms", "300"],
                             "other": ["--tokens", "2"]},
                            model_yaml={"chat": ["    aliases: [gpt]",
                                                 "    name: The chat model"]}) as m:
            p = ProxyProcess(m.port, workers=2)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                base = "http://127.0.0.1:%d" % p.port

                # The version: llama-swap's fields.
                status, _, body = p.request("GET", "/api/version")
                self.assertEqual(status, 200)
                v = json.loads(body)
                self.assertEqual(sorted(v), ["build_date", "commit", "version"])
                with open(os.path.join(os.environ.get("TEST_SRCDIR", ""),
                                       "modelplane", "VERSION")) as f:
                    self.assertEqual(v["version"], f.read().strip())

                # The event stream: the state first.
                ev = Stream(p.port, "/api/events")
                self.assertEqual(ev.status, 200)
                self.assertEqual(ev.headers["Content-Type"], "text/event-stream")
                self.assertTrue(ev.has('"type":"modelStatus"'))
                models = [d for t, d in ev.events() if t == "modelStatus"][0]
                self.assertEqual([x["id"] for x in models], ["chat", "other"])
                chat = models[0]
                self.assertEqual(chat["state"], "stopped")
                self.assertEqual(chat["aliases"], ["gpt"])
                self.assertEqual(chat["name"], "The chat model")
                self.assertEqual(chat["nodes"][0]["node"], "127.0.0.1:%d" % m.port)

                # Load (through an alias): 202 at once, then starting and
                # ready through the stream, as the manager says.
                status, _, body = p.request("POST", "/api/models/load/gpt")
                self.assertEqual(status, 202, body)
                self.assertEqual(json.loads(body)["model"], "chat")
                states = lambda: [next(x for x in d if x["id"] == "chat")["nodes"][0]["state"]
                                  for t, d in ev.events() if t == "modelStatus"]
                self.assertTrue(wait_for(lambda: "ready" in states(), 20), states())
                self.assertIn("starting", states())
                self.assertEqual(m.model("chat").state, pb.MODEL_STATE_READY)
                ready = [d for t, d in ev.events() if t == "modelStatus"][-1][0]["nodes"][0]
                self.assertGreater(ready["pid"], 0)
                # llama-swap's /running fields, from the manager.
                running = json.loads(p.request("GET", "/running")[2])["running"]
                self.assertEqual([r["model"] for r in running], ["chat"])
                r = running[0]
                self.assertEqual((r["state"], r["name"], r["ttl"]),
                                 ("ready", "The chat model", 0))
                self.assertIn("fake_upstream --host 127.0.0.1 --port", r["cmd"])
                self.assertTrue(r["proxy"].startswith("http://127.0.0.1:"))
                self.assertEqual(p.request("POST", "/api/models/load/nope")[0], 404)
                self.assertEqual(p.request("GET", "/api/models/load/chat")[0], 405)

                # A request: its activity in the stream, with its tokens.
                status, _, _ = p.request("POST", "/v1/chat/completions",
                                         {"model": "chat", "messages": []})
                self.assertEqual(status, 200)
                self.assertTrue(ev.has('{"type":"activity"'))
                act = [d for t, d in ev.events() if t == "activity"][0]
                self.assertEqual((act["model"], act["status"], act["output_tokens"]),
                                 ("chat", 200, 4))

                # The model's output, its history first, then live.
                logs = Stream(p.port, "/logs/stream/chat")
                self.assertEqual(logs.status, 200)
                self.assertTrue(logs.headers["Content-Type"].startswith("text/plain"))
                self.assertTrue(logs.has("listening on 127.0.0.1:"), logs.text)
                fresh = Stream(p.port, "/logs/stream/chat?no-history")
                self.assertEqual(fresh.status, 200)
                # Stopped: the model's last words reach the live readers.
                self.assertEqual(p.request("POST", "/api/models/unload/chat")[0], 200)
                self.assertTrue(fresh.has("fake_upstream: received"), fresh.text)
                self.assertNotIn("listening on", fresh.text)
                self.assertTrue(logs.has("fake_upstream: received"))
                logs.close()
                fresh.close()
                status, _, body = p.request("GET", "/logs/stream/nope")
                self.assertEqual(status, 404)
                self.assertIn(b"no model 'nope'", body)
                manager = Stream(p.port, "/logs/stream/manager")
                self.assertTrue(manager.has("chat"), manager.text)
                manager.close()

                # The proxy's own log: /logs, /logs/stream and the events.
                status, _, body = p.request("GET", "/logs")
                self.assertEqual(status, 200)
                self.assertIn(b"modelproxy listening on", body)
                own = Stream(p.port, "/logs/stream")
                self.assertTrue(own.has("modelproxy listening on"))
                own.close()
                self.assertTrue(ev.has('"type":"logData"'))
                ev.close()

                # The UI's files as curl gets them.
                head = curl("-o", "/dev/null", "-D", "-", base + "/").decode()
                self.assertIn("302", head.splitlines()[0])
                self.assertIn("location: /ui/", head.lower())
                html = curl(base + "/ui/").decode()
                self.assertIn("<title>modelplane</title>", html)
                for enc, flag in (("br", "br"), ("gzip", "gzip")):
                    head = curl("-o", "/dev/null", "-D", "-", "-H",
                                "Accept-Encoding: " + flag, base + "/ui/app.js").decode().lower()
                    self.assertIn("content-encoding: %s" % enc, head)
                    self.assertIn("content-security-policy: default-src 'none'", head)
                    self.assertIn("vary: accept-encoding", head)
                # curl decodes what it asked for: the same file.
                js = curl("--compressed", base + "/ui/app.js")
                self.assertEqual(js, curl(base + "/ui/app.js"))
                etag = [l.split(":", 1)[1].strip() for l in
                        curl("-o", "/dev/null", "-D", "-", base + "/ui/app.js").decode().splitlines()
                        if l.lower().startswith("etag:")][0]
                code = curl("-o", "/dev/null", "-w", "%{http_code}", "-H",
                            "If-None-Match: " + etag, base + "/ui/app.js")
                self.assertEqual(code, b"304")
                code = curl("-o", "/dev/null", "-w", "%{http_code}", base + "/ui/nope.js")
                self.assertEqual(code, b"404")
            finally:
                p.stop()

    def test_with_api_keys_the_files_are_open_and_the_api_is_not(self):
        with ManagerProcess({"chat": []}, extra_yaml="apiKeys: [sk-ui]\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                auth = {"Authorization": "Bearer sk-ui"}
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models", headers=auth)[0] == 200, 10))
                self.assertEqual(p.request("GET", "/ui/")[0], 200)
                self.assertEqual(p.request("GET", "/ui/app.js")[0], 200)
                for path in ("/api/events", "/logs/stream", "/logs", "/api/version",
                             "/api/metrics/activity"):
                    self.assertEqual(p.request("GET", path)[0], 401, path)
                self.assertEqual(p.request("POST", "/api/models/load/chat")[0], 401)
                ev = Stream(p.port, "/api/events", headers=auth)
                self.assertEqual(ev.status, 200)
                self.assertTrue(ev.has('"type":"modelStatus"'))
                ev.close()
            finally:
                p.stop()

    def test_the_startup_profile_and_capabilities(self):
        with ManagerProcess({"chat": []},
                            model_yaml={"chat": ["    capabilities: {in: [text], out: [text],"
                                                 " tools: true, context: 4096}"]},
                            extra_yaml="profiles:\n  work: {pins: {gpt: chat}}\n"
                                       "hooks:\n  on_startup: {profile: work}\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(lambda: json.loads(
                    p.request("GET", "/api/profiles")[2]).get("active") == "work", 10))
                # llama-swap's capabilities fields and `created` in /v1/models.
                chat = next(e for e in json.loads(p.request("GET", "/v1/models")[2])["data"]
                            if e["id"] == "chat")
                self.assertEqual(chat["context_length"], 4096)
                self.assertEqual(chat["meta"]["n_ctx"], 4096)
                self.assertEqual(chat["supported_parameters"], ["tools", "tool_choice"])
                self.assertEqual(chat["architecture"]["modality"], "text->text")
                self.assertGreater(chat["created"], 1700000000)
                # The pin works: gpt is chat.
                self.assertEqual(p.request("POST", "/v1/chat/completions",
                                           {"model": "gpt", "messages": []})[0], 200)
            finally:
                p.stop()

    def test_the_activity_store_survives_a_restart_and_is_pruned(self):
        tmp = tempfile.mkdtemp()
        db = os.path.join(tmp, "activity.db")
        with ManagerProcess({"chat": ["--tokens", "3"]},
                            extra_yaml="store:\n  path: %s\n  maxRows: 20\n" % db) as m:
            def activity(p, query=""):
                status, _, body = p.request("GET", "/api/metrics/activity" + query)
                self.assertEqual(status, 200, body)
                return json.loads(body)

            p = ProxyProcess(m.port, workers=2)
            try:
                self.assertTrue(p.wait_log(r"activity store .*activity\.db"), p.log())
                for _ in range(5):
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               {"model": "chat", "messages": []})[0], 200)
                # The model's own error: its message is kept.
                self.assertEqual(p.request("GET", "/upstream/chat/no/such/path")[0], 404)
                # Written within 100 ms of each request, in batches.
                self.assertTrue(wait_for(lambda: len(activity(p)["activity"]) == 6, 10))
                page = activity(p, "?limit=4")
                self.assertEqual(len(page["activity"]), 4)
                first_ids = [e["id"] for e in activity(p)["activity"]]
                older = activity(p, "?before=%d" % page["next_before"])
                self.assertEqual([e["id"] for e in older["activity"]], first_ids[4:])
                failed = activity(p, "?status=404")["activity"]
                self.assertEqual(len(failed), 1)
                self.assertEqual(failed[0]["path"], "/upstream/chat/no/such/path")
                self.assertTrue(failed[0]["error"], failed[0])
            finally:
                p.stop()
            # The file is SQLite in WAL mode, with what was served.
            con = sqlite3.connect(db)
            self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(con.execute("SELECT COUNT(*) FROM activity").fetchone()[0], 6)
            con.close()
            # A new proxy: the history is there, and new ids go on after it.
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(p.wait_log(r"activity store .*ids after %d" % max(first_ids)))
                self.assertEqual([e["id"] for e in activity(p)["activity"]], first_ids)
                for _ in range(30):
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               {"model": "chat", "messages": []})[0], 200)
                self.assertTrue(wait_for(
                    lambda: activity(p)["activity"][0]["id"] == max(first_ids) + 30, 10))
                # Pruned to its bound (20, and at most 1 % or a batch more).
                ids = [e["id"] for e in activity(p, "?limit=1000")["activity"]]
                self.assertLessEqual(len(ids), 21)
                self.assertGreaterEqual(len(ids), 20)
                self.assertEqual(ids[0], max(first_ids) + 30)
                # A second proxy on the same file keeps its log in memory.
                other = ProxyProcess(m.port, workers=1)
                try:
                    self.assertTrue(other.wait_log(r"another process holds it"), other.log())
                    self.assertEqual(other.request("POST", "/v1/chat/completions",
                                                   {"model": "chat", "messages": []})[0], 200)
                    self.assertEqual(len(json.loads(other.request(
                        "GET", "/api/metrics/activity")[2])["activity"]), 1)
                finally:
                    other.stop()
            finally:
                p.stop()

if __name__ == "__main__":
    junit.main()
