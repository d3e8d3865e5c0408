"""The web UI in a real browser: Debian's chromium driven by playwright-core
(tests/e2e/node/ui.mjs) against a real stack. It sees the models, clicks
Load and sees the state turn ready within a second of the manager saying so,
chats in the playground through a model's loading, sees the activity row
with its tokens/s and exports it, reads a model's output, and fetches
nothing from outside the proxy; with API keys, it is asked for one and
shown nothing without it. Screenshots go with the test outputs
($TEST_UNDECLARED_OUTPUTS_DIR)."""

import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

from modelplane.v1 import model_manager_pb2 as pb

SCRIPT = os.path.realpath(runfile("tests/e2e/node/ui.mjs"))


def browse(proxy, *args):
    modules = os.path.join(os.path.dirname(SCRIPT), "node_modules", "playwright-core")
    assert os.path.isdir(modules), (
        "playwright-core is not installed in %s: run tools/bootstrap.sh" % modules)
    out_dir = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or tempfile.mkdtemp()
    env = dict(os.environ, HOME=os.environ.get("TEST_TMPDIR", tempfile.gettempdir()))
    out = subprocess.run(["node", SCRIPT, "http://127.0.0.1:%d" % proxy.port, out_dir]
                         + list(args), capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"] + "\n" + out.stderr
    return result, out_dir


class UiBrowserTest(unittest.TestCase):
    def test_models_load_playground_activity_and_logs(self):
        with ManagerProcess({"chat": ["--tokens", "6", "--ready-after-ms", "200"],
                             "other": ["--tokens", "8", "--tokens-per-second", "40",
                                       "--ready-after-ms", "2500"]},
                            model_yaml={"chat": ["    aliases: [gpt]"]}) as m:
            p = ProxyProcess(m.port, workers=2)
            # When the manager says chat is READY (its Watch stream).
            ready_at = []

            def watch():
                for ev in m.stub().Watch(pb.WatchRequest(models=["chat"]), timeout=90):
                    if ev.model.state == pb.MODEL_STATE_READY and not ready_at:
                        ready_at.append(time.time())
                        return
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                r, out_dir = browse(p, "full")
                self.assertEqual(r["url"], "http://127.0.0.1:%d/ui/" % p.port)
                self.assertEqual(r["models"], ["chat", "other"])
                self.assertEqual(r["outside"], [])
                self.assertEqual(r["console"], [])
                # Ready on the page within a second of the manager's event.
                watcher.join(10)
                self.assertTrue(ready_at)
                self.assertLess(r["readyAtMs"] / 1000.0 - ready_at[0], 1.0)
                self.assertTrue(r["pid"].isdigit(), r["pid"])
                # The playground's chat, shown loading while "other" started.
                self.assertEqual(r["chat"], "".join("tok%d " % i for i in range(8)))
                self.assertTrue(any(s.startswith("Loading other") for s in r["statuses"]),
                                r["statuses"])
                self.assertIn("8 tokens", r["chatStatus"])
                # Its activity row, with tokens/s (column "Gen tok/s").
                row = next(a for a in r["activity"] if a["model"] == "other")
                self.assertEqual(row["cells"][4], "200")
                self.assertEqual(row["cells"][6], "8")
                self.assertGreater(float(row["cells"][8]), 0)
                # llama.cpp's timings: the prompt's speed as the model said.
                self.assertEqual(row["cells"][7], "2000.0")
                # It waited for "other" to load (2.5 s), not in a queue.
                self.assertGreater(float(row["cells"][11]), 1000)
                self.assertLess(float(row["cells"][10]), 1000)
                csv = r["csv"].splitlines()
                self.assertTrue(csv[0].startswith("id,timestamp,model,node,path,status"))
                self.assertTrue(any(",other," in l for l in csv[1:]))
                # The model's output.
                self.assertIn("listening on 127.0.0.1:", r["log"])
                for name in ("models", "playground", "activity", "logs"):
                    self.assertTrue(os.path.getsize(os.path.join(out_dir, name + ".png")) > 0)
            finally:
                p.stop()

    def test_with_api_keys_it_asks_for_one_and_shows_nothing_without(self):
        with ManagerProcess({"chat": []}, extra_yaml="apiKeys: [sk-browser]\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                auth = {"Authorization": "Bearer sk-browser"}
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models", headers=auth)[0] == 200, 10))
                r, _ = browse(p, "key", "sk-browser")
                self.assertTrue(r["modelsHiddenWithoutKey"])
                self.assertEqual(r["rowsWithoutKey"], 0)
                self.assertIn("refused", r["wrongKeyError"])
                self.assertEqual(r["modelsWithKey"], 1)
                self.assertEqual(r["outside"], [])
            finally:
                p.stop()


if __name__ == "__main__":
    junit.main()
