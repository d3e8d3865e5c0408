"""modelproxy over several modelmanagers (docs/cluster.md): three nodes on
127.0.0.2, 127.0.0.3 and 127.0.0.4, each a real modelmanager whose fake
models listen on that node's address, behind one proxy (two for the
agreement test). Placement by residency, a cold start where it costs least,
two proxies agreeing, draining nodes, /v1/models and /running across the
nodes, X-Modelplane-Node, and a node killed with SIGKILL."""

import json
import signal
import time
import unittest

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def start_nodes(models_by_host):
    nodes = []
    try:
        for host in HOSTS:
            m = ManagerProcess({k: [] for k in models_by_host[host]}, host=host)
            m.start()
            nodes.append(m)
    except BaseException:
        for m in nodes:
            m.stop()
        raise
    return nodes


def name(m):
    return "%s:%d" % (m.host, m.port)


def complete(proxy, model, timeout=30):
    status, headers, body = proxy.request("POST", "/v1/completions",
                                          {"model": model, "prompt": "hi"},
                                          timeout=timeout)
    return status, headers.get("X-Modelplane-Node"), body


def running(proxy):
    """(model, node) -> state; None until the proxy heard from a manager."""
    status, _, body = proxy.request("GET", "/running")
    if status != 200:
        return None
    return {(r["model"], r["node"]): r["state"] for r in json.loads(body)["running"]}


def nodes_of(proxy, model):
    """The nodes /v1/models lists for `model` (None before it is known)."""
    status, _, body = proxy.request("GET", "/v1/models")
    if status != 200:
        return None
    for d in json.loads(body)["data"]:
        if d["id"] == model:
            return d["meta"]["nodes"]
    return None


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Each node runs one model at a time (no groups: llama-swap's swap).
        cls.nodes = start_nodes({"127.0.0.2": ["a", "shared"],
                                 "127.0.0.3": ["b", "shared"],
                                 "127.0.0.4": ["c", "shared"]})
        cls.proxy = ProxyProcess([name(m) for m in cls.nodes], workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        for m in cls.nodes:
            m.stop()

    def setUp(self):
        # Every node idle and undrained; the proxy has seen it.
        for m in self.nodes:
            m.stub().Drain(pb.DrainRequest(resume=True), timeout=10)
            m.stub().StopAll(pb.StopAllRequest(), timeout=30)
        self.assertTrue(wait_for(lambda: running(self.proxy) == {}, 10))
        self.assertTrue(wait_for(lambda: len(nodes_of(self.proxy, "shared") or []) == 3, 10))

    def start_on(self, m, model):
        m.stub().Start(pb.StartRequest(model=model), timeout=30)
        self.assertTrue(wait_for(
            lambda: running(self.proxy).get((model, name(m))) == "ready", 10))

    def test_models_are_listed_once_with_the_nodes_that_have_them(self):
        status, _, body = self.proxy.request("GET", "/v1/models")
        self.assertEqual(status, 200, body)
        data = json.loads(body)["data"]
        self.assertEqual([d["id"] for d in data], ["a", "b", "c", "shared"])
        by_id = {d["id"]: d for d in data}
        self.assertEqual(by_id["shared"]["meta"]["nodes"],
                         sorted(name(m) for m in self.nodes))
        self.assertEqual(by_id["b"]["meta"]["nodes"], [name(self.nodes[1])])

    def test_a_request_goes_where_its_model_is_ready(self):
        self.start_on(self.nodes[1], "shared")
        for _ in range(5):
            status, node, body = complete(self.proxy, "shared")
            self.assertEqual(status, 200, body)
            self.assertEqual(node, name(self.nodes[1]))
        # Nothing was started anywhere else.
        self.assertEqual(running(self.proxy), {("shared", name(self.nodes[1])): "ready"})
        # A model one node has goes there, started if need be.
        status, node, body = complete(self.proxy, "c")
        self.assertEqual((status, node), (200, name(self.nodes[2])), body)

    def test_a_cold_start_goes_where_it_evicts_nothing(self):
        # a runs on 127.0.0.2 and b on 127.0.0.3: starting shared there would
        # evict them; 127.0.0.4 runs nothing.
        self.start_on(self.nodes[0], "a")
        self.start_on(self.nodes[1], "b")
        status, node, body = complete(self.proxy, "shared")
        self.assertEqual((status, node), (200, name(self.nodes[2])), body)
        r = running(self.proxy)
        self.assertEqual(r.get(("a", name(self.nodes[0]))), "ready")
        self.assertEqual(r.get(("b", name(self.nodes[1]))), "ready")

    def test_two_proxies_choose_alike(self):
        # shared is READY on two nodes, idle on both: each proxy's choice is
        # the rendezvous hash's, the same for both without their talking.
        self.start_on(self.nodes[0], "shared")
        self.start_on(self.nodes[2], "shared")
        other = ProxyProcess([name(m) for m in reversed(self.nodes)], workers=1)
        try:
            self.assertTrue(wait_for(
                lambda: len([k for k in running(other) or {} if k[0] == "shared"]) == 2,
                10))
            chosen = set()
            for p in (self.proxy, other, self.proxy, other):
                status, node, body = complete(p, "shared")
                self.assertEqual(status, 200, body)
                chosen.add(node)
            self.assertEqual(len(chosen), 1, chosen)
            self.assertIn(chosen.pop(), {name(self.nodes[0]), name(self.nodes[2])})
        finally:
            other.stop()

    def test_a_draining_node_starts_nothing(self):
        for m in self.nodes[1:]:
            self.assertTrue(m.stub().Drain(pb.DrainRequest(), timeout=10).draining)
        status, node, body = complete(self.proxy, "shared")
        self.assertEqual((status, node), (200, name(self.nodes[0])), body)
        # A model only a draining node has: its refusal, named.
        status, _, body = complete(self.proxy, "b")
        self.assertEqual(status, 503, body)
        self.assertIn(b"draining", body)


class NodeLostTest(unittest.TestCase):
    def test_a_killed_node_leaves_routing_and_its_models_go_elsewhere(self):
        nodes = start_nodes({h: ["shared"] for h in HOSTS})
        proxy = ProxyProcess([name(m) for m in nodes], workers=1)
        try:
            self.assertTrue(wait_for(lambda: len(nodes_of(proxy, "shared") or []) == 3, 10))
            status, first, body = complete(proxy, "shared")
            self.assertEqual(status, 200, body)
            victim = next(m for m in nodes if name(m) == first)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            killed = time.monotonic()
            # The next request is placed on another node (a cold start
            # there) and answered.
            status, node, body = complete(proxy, "shared")
            self.assertEqual(status, 200, body)
            self.assertNotEqual(node, first)
            self.assertLess(time.monotonic() - killed, 30)
            self.assertNotIn(("shared", first), running(proxy))
        finally:
            proxy.stop()
            for m in nodes:
                m.stop()


if __name__ == "__main__":
    junit.main()
