"""The official OpenAI Node SDK (npm `openai`, installed by tools/bootstrap.sh
into tests/e2e/node) talking to modelproxy: streaming, swapping, a persistent
model, errors as the SDK's own exceptions."""

import json
import os
import subprocess
import unittest

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

from modelplane.v1 import model_manager_pb2 as pb

# The script's real path: node resolves `openai` from the node_modules next to
# it in the source tree (bootstrap's `npm ci`), not from the runfiles.
SCRIPT = os.path.realpath(runfile("tests/e2e/node/chat.mjs"))


def sdk(proxy, *args):
    modules = os.path.join(os.path.dirname(SCRIPT), "node_modules", "openai")
    assert os.path.isdir(modules), (
        "the OpenAI Node SDK is not installed in %s: run tools/bootstrap.sh" % modules)
    out = subprocess.run(["node", SCRIPT, "http://127.0.0.1:%d/v1" % proxy.port] + list(args),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class OpenAiSdkTest(unittest.TestCase):
    def test_the_node_sdk_streams_swaps_and_sees_errors(self):
        with ManagerProcess(
                {"chat-a": ["--tokens", "12", "--tokens-per-second", "200",
                            "--ready-after-ms", "300"],
                 "chat-b": ["--tokens", "5"],
                 "embed": []},
                model_yaml={"chat-a": ["    aliases: [gpt-4o-mini]"]},
                extra_yaml="groups:\n"
                           "  chat: {swap: true, exclusive: false, members: [chat-a, chat-b]}\n"
                           "  emb: {swap: false, exclusive: false, persistent: true,"
                           " members: [embed]}\n") as m:
            p = ProxyProcess(m.port, workers=2)
            try:
                self.assertTrue(wait_for(
                    lambda: len(sdk(p, "models").get("ids", [])) == 3, 15))
                self.assertEqual(sorted(sdk(p, "models")["ids"]), ["chat-a", "chat-b", "embed"])
                # Streamed through an alias, starting the model on demand.
                r = sdk(p, "stream", "gpt-4o-mini")
                self.assertEqual(r["text"], "".join("tok%d " % i for i in range(12)))
                self.assertEqual(m.model("chat-a").state, pb.MODEL_STATE_READY)
                self.assertEqual(sdk(p, "embed", "embed"), {"dimensions": 8})
                # The other member of the swap group swaps chat-a out ...
                r = sdk(p, "stream", "chat-b")
                self.assertEqual(r["text"], "tok0 tok1 tok2 tok3 tok4 ")
                self.assertEqual(m.model("chat-a").state, pb.MODEL_STATE_STOPPED)
                # ... and the persistent embedding model stayed loaded.
                self.assertEqual(m.model("embed").state, pb.MODEL_STATE_READY)
                err = sdk(p, "stream", "no-such-model")["error"]
                self.assertEqual((err["status"], err["type"]), (404, "not_found_error"))
            finally:
                p.stop()


class OpenAiSdkClusterTest(unittest.TestCase):
    def test_the_node_sdk_streams_through_a_cluster_of_three_nodes(self):
        # Three managers on their own loopback addresses (docs/cluster.md);
        # "shared" is on two of them, "solo" on one.
        nodes = []
        try:
            for host, models in [("127.0.0.2", ["shared"]),
                                 ("127.0.0.3", ["shared", "solo"]),
                                 ("127.0.0.4", ["other"])]:
                m = ManagerProcess({k: ["--tokens", "6", "--tokens-per-second", "300"]
                                    for k in models}, host=host)
                m.start()
                nodes.append(m)
            names = ["%s:%d" % (m.host, m.port) for m in nodes]
            p = ProxyProcess(names, workers=2)
            try:
                self.assertTrue(wait_for(
                    lambda: sorted(sdk(p, "models").get("ids", []))
                    == ["other", "shared", "solo"], 15))
                r = sdk(p, "stream", "solo")
                self.assertEqual(r["text"], "".join("tok%d " % i for i in range(6)))
                self.assertEqual(r["node"], names[1])
                # shared is READY only where solo is not (one model at a time
                # per node): it starts on the node that runs nothing.
                r = sdk(p, "stream", "shared")
                self.assertEqual(r["text"], "".join("tok%d " % i for i in range(6)))
                self.assertEqual(r["node"], names[0])
                # ... and stays there.
                self.assertEqual(sdk(p, "stream", "shared")["node"], names[0])
            finally:
                p.stop()
        finally:
            for m in nodes:
                m.stop()


if __name__ == "__main__":
    junit.main()
