"""modelproxy over several modelmanagers (docs/cluster.md): three nodes on
127.0.0.2, 127.0.0.3 and 127.0.0.4, each a real modelmanager whose fake
models listen on that node's address, behind one proxy (two for the
agreement test). Placement by residency, a cold start where it costs least,
two proxies agreeing, draining nodes, /v1/models and /running across the
nodes, X-Modelplane-Node, and a node killed with SIGKILL."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess, free_port
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def start_nodes(models_by_host, fake=(), hosts=HOSTS, **kw):
    """A manager per host, its models (a list per host, or one list for
    every host) each a fake_upstream with `fake` flags; `kw` goes to
    ManagerProcess (model_yaml, port). Those started are stopped if one
    fails to start."""
    nodes = []
    try:
        for host in hosts:
            models = (models_by_host[host] if isinstance(models_by_host, dict)
                      else models_by_host)
            m = ManagerProcess({k: list(fake) for k in models}, host=host, **kw)
            nodes.append(m)
            m.start()
    except BaseException:
        for m in nodes:
            m.stop()
        raise
    return nodes


def took(what, since):
    """Says how long something took (in the test's log; timings are
    measured here, never asserted: docs/cluster.md states the bounds)."""
    sys.stderr.write("%s: %.2f s\n" % (what, time.monotonic() - since))


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
        # Counted by node, and the placements by reason.
        text = self.proxy.request("GET", "/metrics")[2].decode()
        self.assertRegex(text, r'modelproxy_requests_total\{model="shared",node="%s",'
                         r'route="/v1/completions",status="200"\} [5-9]'
                         % re.escape(name(self.nodes[1])))
        self.assertRegex(text, r'modelproxy_placements_total\{node="%s",reason="ready"\} [5-9]'
                         % re.escape(name(self.nodes[1])))
        self.assertRegex(text, r'modelproxy_placements_total\{node="%s",reason="cost"\} [1-9]'
                         % re.escape(name(self.nodes[2])))

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


def mpctl(nodes, *args, managers=None, timeout=60):
    """mpctl with every node as a --manager (or `managers`)."""
    flags = [f for m in (managers or [name(n) for n in nodes]) for f in ("--manager", m)]
    p = subprocess.run([runfile("client/mpctl")] + flags + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class MpctlClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodes = start_nodes({"127.0.0.2": ["a", "shared"],
                                 "127.0.0.3": ["b", "shared"],
                                 "127.0.0.4": ["c"]})

    @classmethod
    def tearDownClass(cls):
        for m in cls.nodes:
            m.stop()

    def test_ls_lists_every_nodes_models_with_a_node_column(self):
        code, out, err = mpctl(self.nodes, "ls")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("NODE"), out)
        rows = {tuple(l.split()[:2]) for l in lines[1:]}
        for node, model in [(0, "a"), (0, "shared"), (1, "b"), (1, "shared"), (2, "c")]:
            self.assertIn((name(self.nodes[node]), model), rows)
        code, out, err = mpctl(self.nodes, "--json", "ls")
        self.assertEqual(code, 0, err)
        listed = json.loads(out)["nodes"]
        self.assertEqual(sorted(n["node"] for n in listed), sorted(name(m) for m in self.nodes))
        by = {n["node"]: [m["id"] for m in n["models"]] for n in listed}
        self.assertEqual(by[name(self.nodes[2])], ["c"])
        # A node that cannot be reached is said, the others still listed.
        dead = "127.0.0.5:%d" % free_port()
        code, out, err = mpctl(self.nodes, "ls",
                               managers=[name(m) for m in self.nodes] + [dead])
        self.assertEqual(code, 4, err)
        self.assertIn(dead, err)
        self.assertIn(name(self.nodes[2]), out)

    def test_model_commands_go_to_the_node_that_has_it(self):
        code, out, err = mpctl(self.nodes, "start", "c")
        self.assertEqual(code, 0, err)
        self.assertIn("c READY", out)
        self.assertEqual(self.nodes[2].model("c").state, pb.MODEL_STATE_READY)
        code, out, err = mpctl(self.nodes, "stop", "c")
        self.assertEqual(code, 0, err)
        # On several nodes: --node says which.
        code, out, err = mpctl(self.nodes, "start", "shared")
        self.assertEqual(code, 2, err)
        self.assertIn("several nodes", err)
        self.assertIn(name(self.nodes[0]), err)
        code, out, err = mpctl(self.nodes, "--node", name(self.nodes[1]), "start", "shared")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.nodes[1].model("shared").state, pb.MODEL_STATE_READY)
        self.assertEqual(self.nodes[0].model("shared").state, pb.MODEL_STATE_STOPPED)
        code, out, err = mpctl(self.nodes, "--node", name(self.nodes[1]), "stop", "shared")
        self.assertEqual(code, 0, err)
        code, out, err = mpctl(self.nodes, "start", "nope")
        self.assertEqual(code, 3, err)
        # plan: each node that has the model says what a start costs there.
        code, out, err = mpctl(self.nodes, "plan", "shared")
        self.assertEqual(code, 0, err)
        self.assertIn(name(self.nodes[0]) + ":", out)
        self.assertIn(name(self.nodes[1]) + ":", out)
        code, out, err = mpctl(self.nodes, "--json", "plan", "shared")
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(json.loads(l)["node"] for l in out.splitlines()),
                         sorted(name(m) for m in self.nodes[:2]))

    def test_drain_and_undrain_a_node(self):
        code, out, err = mpctl(self.nodes, "drain")
        self.assertEqual(code, 2, err)  # Which one?
        code, out, err = mpctl(self.nodes, "drain", name(self.nodes[2]))
        self.assertEqual(code, 0, err)
        self.assertIn("draining", out)
        try:
            code, out, err = mpctl(self.nodes, "ls")
            self.assertIn("(draining: %s" % name(self.nodes[2]), out)
            code, out, err = mpctl(self.nodes, "start", "c")
            self.assertEqual(code, 4, err)
            self.assertIn("draining", err)
        finally:
            code, out, err = mpctl(self.nodes, "undrain", name(self.nodes[2]))
            self.assertEqual(code, 0, err)
        self.assertIn("not draining", out)

    def test_watch_merges_the_nodes_events_each_tagged(self):
        proc = subprocess.Popen(
            [runfile("client/mpctl")]
            + [f for m in self.nodes for f in ("--manager", name(m))]
            + ["--json", "watch"], stdout=subprocess.PIPE, text=True)
        try:
            seen = []
            done = threading.Event()

            def read():
                for line in proc.stdout:
                    seen.append(json.loads(line))
                    if any(e["node"] == name(self.nodes[2])
                           and e["event"].get("model", {}).get("state") == "MODEL_STATE_READY"
                           for e in seen):
                        done.set()
                        return
            t = threading.Thread(target=read, daemon=True)
            t.start()
            self.assertTrue(wait_for(lambda: {e["node"] for e in seen
                                              if e["event"].get("type") == "TYPE_BOOKMARK"}
                                     == {name(m) for m in self.nodes}, 10), seen)
            self.nodes[2].stub().Start(pb.StartRequest(model="c"), timeout=30)
            self.assertTrue(done.wait(10), seen)
        finally:
            proc.terminate()
            proc.wait(10)
            self.nodes[2].stub().StopAll(pb.StopAllRequest(), timeout=30)


class Dnsmasq:
    """A real dnsmasq on a loopback UDP port, answering for NAME.test from a
    hosts file (rewritten, then re-read on SIGHUP)."""

    def __init__(self, records):
        self.tmp = tempfile.TemporaryDirectory()
        self.hosts = os.path.join(self.tmp.name, "hosts")
        self.write(records)
        # A free port now may be taken before dnsmasq binds it (tests run
        # side by side): it is ready once it answers, else another port.
        for _ in range(10):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            sock.close()
            self.proc = subprocess.Popen(
                ["/usr/sbin/dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
                 "--no-hosts", "--local=/test/", "--addn-hosts=" + self.hosts,
                 "--listen-address=127.0.0.1", "--port=%d" % self.port,
                 "--bind-interfaces", "--user=root", "--pid-file=",
                 "--log-facility=/dev/null"], stderr=subprocess.DEVNULL)
            if wait_for(self._answers, 5) and self.proc.poll() is None:
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("dnsmasq did not start")

    def _answers(self):
        if self.proc.poll() is not None:
            return True  # Exited: the loop above sees it is not running.
        query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 b"\x05ready\x04test\x00\x00\x01\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                return s.recv(512)[:2] == b"\x12\x34"
            except OSError:
                return False

    def write(self, records):
        """records: name -> list of addresses."""
        with open(self.hosts, "w") as f:
            for n, addresses in records.items():
                for a in addresses:
                    f.write("%s %s\n" % (a, n))

    def set(self, records):
        self.write(records)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.tmp.cleanup()


class DnsTest(unittest.TestCase):
    def test_every_record_is_a_node_and_records_come_and_go(self):
        port = free_port()  # Every manager on it, each on its own address.
        nodes = []
        dns = Dnsmasq({"managers.test": HOSTS[:2]})
        proxy = None
        try:
            nodes = start_nodes(["shared"], port=port)
            proxy = ProxyProcess(
                ["dns://127.0.0.1:%d/managers.test:%d" % (dns.port, port)],
                workers=1, flags=["--resolve-interval-ms", "300"])
            both = sorted(name(m) for m in nodes[:2])
            self.assertTrue(wait_for(lambda: nodes_of(proxy, "shared") == both, 10),
                            nodes_of(proxy, "shared"))
            # A record added: the node gets traffic (shared runs only there).
            nodes[2].stub().Start(pb.StartRequest(model="shared"), timeout=30)
            added = time.monotonic()
            dns.set({"managers.test": HOSTS})
            self.assertTrue(wait_for(
                lambda: len(nodes_of(proxy, "shared") or []) == 3, 10))
            took("a DNS record added: its node routed", added)
            self.assertTrue(wait_for(
                lambda: running(proxy).get(("shared", name(nodes[2]))) == "ready", 10))
            status, node, body = complete(proxy, "shared")
            self.assertEqual((status, node), (200, name(nodes[2])), body)
            # A record removed: that node gets no new request.
            dns.set({"managers.test": HOSTS[:2]})
            self.assertTrue(wait_for(lambda: nodes_of(proxy, "shared") == both, 10))
            status, node, body = complete(proxy, "shared")
            self.assertEqual(status, 200, body)
            self.assertIn(node, both)
            self.assertTrue(any("resolves to" in l for l in proxy.log()), proxy.log())
            # mpctl takes the same target.
            code, out, err = mpctl(nodes, "ls", managers=[
                "dns://127.0.0.1:%d/managers.test:%d" % (dns.port, port)])
            self.assertEqual(code, 0, err)
            self.assertEqual(sorted({l.split()[0] for l in out.splitlines()[1:]}), both)
        finally:
            if proxy is not None:
                proxy.stop()
            for m in nodes:
                m.stop()
            dns.stop()


class DnsTlsTest(unittest.TestCase):
    def test_a_node_found_through_dns_is_checked_against_the_name(self):
        # The manager's certificate names the DNS name only (as a Service's
        # would), not the address it resolves to.
        with tempfile.TemporaryDirectory() as d:
            pem, key = d + "/m.pem", d + "/m.key"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", key, "-out", pem, "-days", "1", "-subj",
                 "/CN=managers.test", "-addext", "subjectAltName=DNS:managers.test"],
                check=True, capture_output=True, timeout=60)
            dns = Dnsmasq({"managers.test": HOSTS[:1]})
            nodes, proxy = [], None
            try:
                nodes = start_nodes(["a"], hosts=HOSTS[:1], port=free_port(),
                                    flags=["--tls-cert", pem, "--tls-key", key])
                target = "dns://127.0.0.1:%d/managers.test:%d" % (dns.port, nodes[0].port)
                code, out, err = mpctl(nodes, "--tls-ca", pem, "ls", managers=[target])
                self.assertEqual(code, 0, err)
                self.assertIn(name(nodes[0]), out)
                # By address the certificate does not fit, unless told the name.
                code, out, err = mpctl(nodes, "--tls-ca", pem, "ls")
                self.assertNotEqual(code, 0, out)
                code, out, err = mpctl(nodes, "--tls-ca", pem, "--tls-server-name",
                                       "managers.test", "ls")
                self.assertEqual(code, 0, err)
                proxy = ProxyProcess([target], workers=1,
                                     flags=["--manager-tls-ca", pem])
                self.assertTrue(wait_for(lambda: nodes_of(proxy, "a") == [name(nodes[0])], 20))
            finally:
                if proxy is not None:
                    proxy.stop()
                for m in nodes:
                    m.stop()
                dns.stop()


class HungAndRestartedNodeTest(unittest.TestCase):
    def test_a_stopped_manager_is_given_up_and_a_restarted_one_rejoins(self):
        port = free_port()
        nodes = []
        try:
            nodes = start_nodes(["shared"], hosts=HOSTS[:2], port=port)
            proxy = ProxyProcess([name(m) for m in nodes], workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: len(nodes_of(proxy, "shared") or []) == 2, 10))
                status, first, body = complete(proxy, "shared")
                self.assertEqual(status, 200, body)
                hung = next(m for m in nodes if name(m) == first)
                other = next(m for m in nodes if m is not hung)
                # SIGSTOP: no reset, no answer; keepalive gives it up.
                stopped = time.monotonic()
                hung.proc.send_signal(signal.SIGSTOP)
                try:
                    self.assertTrue(wait_for(
                        lambda: ("shared", first) not in (running(proxy) or {}), 15))
                    took("SIGSTOP: the hung node out of routing", stopped)
                    status, node, body = complete(proxy, "shared")
                    self.assertEqual((status, node), (200, name(other)), body)
                finally:
                    hung.proc.send_signal(signal.SIGCONT)
                # Killed and restarted on its address: it rejoins.
                hung.proc.send_signal(signal.SIGKILL)
                hung.proc.wait(10)
                other.stub().StopAll(pb.StopAllRequest(), timeout=30)
                hung.start()
                restarted = time.monotonic()
                hung.stub().Start(pb.StartRequest(model="shared"), timeout=30)
                self.assertTrue(wait_for(
                    lambda: (running(proxy) or {}).get(("shared", first)) == "ready", 15))
                took("a restarted manager's model routed again", restarted)
                status, node, body = complete(proxy, "shared")
                self.assertEqual((status, node), (200, first), body)
            finally:
                proxy.stop()
        finally:
            for m in nodes:
                m.stop()


class Stream:
    """A streaming chat completion through the proxy, read on a thread."""

    def __init__(self, proxy, model):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        self.conn.request("POST", "/v1/chat/completions", json.dumps(
            {"model": model, "messages": [], "stream": True, "max_tokens": 200}))
        self.response = self.conn.getresponse()
        self.node = self.response.getheader("X-Modelplane-Node")
        self.body = b""
        self.error = None
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                self.body += chunk
        except Exception as e:  # A broken stream: the error is the point.
            self.error = e
        finally:
            self.conn.close()

    def wait(self):
        self.thread.join(60)
        return self


class ReplicasTest(unittest.TestCase):
    def test_a_model_at_its_limit_spills_over_to_one_more_node_up_to_max(self):
        yaml = {"r": ["    concurrencyLimit: 1",
                      "    replicas: {max: 2, spilloverAfterMs: 300}"]}
        nodes = start_nodes(["r"], fake=["--tokens-per-second", "40"], model_yaml=yaml)
        proxy = ProxyProcess([name(m) for m in nodes], workers=1)
        try:
            self.assertTrue(wait_for(lambda: len(nodes_of(proxy, "r") or []) == 3, 10))
            first = Stream(proxy, "r")
            self.assertEqual(first.response.status, 200)
            # At its limit there: the next starts it on one more node
            # instead of a 429.
            second = Stream(proxy, "r")
            self.assertEqual(second.response.status, 200)
            self.assertNotEqual(second.node, first.node)
            # Both replicas full, and max reached: 429, nothing more starts.
            status, node, body = complete(proxy, "r")
            self.assertEqual(status, 429, body)
            self.assertEqual(len([k for k in running(proxy) if k[0] == "r"]), 2)
            first.wait()
            second.wait()
            self.assertIn(b"[DONE]", first.body)
            self.assertIn(b"[DONE]", second.body)
            text = proxy.request("GET", "/metrics")[2].decode()
            self.assertRegex(text, r'modelproxy_placements_total\{node="%s",'
                             r'reason="spillover"\} 1' % re.escape(second.node))
        finally:
            proxy.stop()
            for m in nodes:
                m.stop()


    def test_requests_waiting_past_the_bound_start_one_more_replica(self):
        yaml = {"r": ["    replicas: {max: 2, spilloverAfterMs: 300}"]}
        nodes = start_nodes(["r"], fake=["--ready-after-ms", "3000"], hosts=HOSTS[:2],
                            model_yaml=yaml)
        proxy = ProxyProcess([name(m) for m in nodes], workers=1)
        try:
            self.assertTrue(wait_for(lambda: len(nodes_of(proxy, "r") or []) == 2, 10))
            answers = []
            first = threading.Thread(target=lambda: answers.append(complete(proxy, "r")))
            first.start()
            # The first waits for its start (3 s) past spilloverAfterMs.
            self.assertTrue(wait_for(
                lambda: any(v == "starting" for v in (running(proxy) or {}).values()), 10))
            time.sleep(0.6)
            status, node, body = complete(proxy, "r")
            first.join(30)
            self.assertEqual(status, 200, body)
            self.assertEqual(answers[0][0], 200, answers)
            self.assertNotEqual(node, answers[0][1])
        finally:
            proxy.stop()
            for m in nodes:
                m.stop()


def model_requests(m, model):
    """Completions the fake model `model` of manager `m` received."""
    conn = http.client.HTTPConnection(m.host, m.ports[model], timeout=10)
    try:
        conn.request("GET", "/stats")
        stats = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return stats.get("requests_by_path", {}).get("/v1/completions", 0)


class FailoverTest(unittest.TestCase):
    def setUp(self):
        self.nodes = start_nodes(["slow"], fake=["--ready-after-ms", "3000"],
                                 hosts=HOSTS[:2])
        self.proxy = ProxyProcess([name(m) for m in self.nodes], workers=1)
        self.assertTrue(wait_for(lambda: len(nodes_of(self.proxy, "slow") or []) == 2, 10))

    def tearDown(self):
        for m in self.nodes:
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGCONT)
        self.proxy.stop()
        for m in self.nodes:
            m.stop()

    def failovers(self, node):
        text = self.proxy.request("GET", "/metrics")[2].decode()
        found = re.search(r'modelproxy_placements_total\{node="%s",reason="failover"\} (\d+)'
                          % re.escape(node), text)
        return int(found.group(1)) if found else 0

    def test_a_request_waiting_on_a_node_that_dies_is_placed_on_another(self):
        answers = []
        waiting = threading.Thread(
            target=lambda: answers.append(complete(self.proxy, "slow", timeout=60)))
        waiting.start()
        # Its node starts the model (3 s); the request waits for the lease.
        self.assertTrue(wait_for(
            lambda: any(v == "starting" for v in (running(self.proxy) or {}).values()), 10))
        starting = next(n for (m, n), v in running(self.proxy).items() if v == "starting")
        victim = next(m for m in self.nodes if name(m) == starting)
        other = next(m for m in self.nodes if m is not victim)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        waiting.join(60)
        status, node, body = answers[0]
        self.assertEqual((status, node), (200, name(other)), body)
        self.assertEqual(self.failovers(name(other)), 1)
        self.assertEqual(model_requests(other, "slow"), 1)  # Sent once.

    def test_a_request_whose_model_cannot_be_reached_is_placed_on_another(self):
        # slow READY on x only; a request there leaves the proxy holding its
        # lease (it lingers 1 s). x's manager hangs (SIGSTOP: it revokes
        # nothing, and the proxy keeps the lease until keepalive gives up,
        # about 3 s) and its model dies: the next request is placed on x and
        # refused at connect, so never sent, and placed again on y.
        x, y = self.nodes
        x.stub().Start(pb.StartRequest(model="slow"), timeout=30)
        self.assertTrue(wait_for(
            lambda: (running(self.proxy) or {}).get(("slow", name(x))) == "ready", 10))
        status, node, body = complete(self.proxy, "slow")
        self.assertEqual((status, node), (200, name(x)), body)
        pid = x.model("slow").pid
        x.proc.send_signal(signal.SIGSTOP)
        os.kill(pid, signal.SIGKILL)
        # The pooled connection to the dead model sees its end first (a
        # write into it could have been read: that one would be a 502).
        time.sleep(0.2)
        status, node, body = complete(self.proxy, "slow", timeout=60)
        self.assertEqual((status, node), (200, name(y)), body)
        self.assertEqual(self.failovers(name(y)), 1)
        self.assertEqual(model_requests(y, "slow"), 1)  # Sent once.


class NodeLostTest(unittest.TestCase):
    def test_a_killed_node_leaves_routing_and_its_models_go_elsewhere(self):
        nodes = start_nodes(["shared"], fake=["--tokens-per-second", "40"])
        proxy = ProxyProcess([name(m) for m in nodes], workers=1)
        try:
            self.assertTrue(wait_for(lambda: len(nodes_of(proxy, "shared") or []) == 3, 10))
            for m in nodes[:2]:
                m.stub().Start(pb.StartRequest(model="shared"), timeout=30)
            self.assertTrue(wait_for(lambda: len(running(proxy) or {}) == 2, 10))
            # Two streams, one on each node where it runs (the fewest in
            # flight): one node is killed under its stream.
            one = Stream(proxy, "shared")
            two = Stream(proxy, "shared")
            self.assertEqual(one.response.status, 200)
            self.assertEqual(two.response.status, 200)
            self.assertEqual({one.node, two.node}, {name(m) for m in nodes[:2]})
            self.assertTrue(wait_for(lambda: one.body and two.body, 10))
            victim = next(m for m in nodes if name(m) == one.node)
            killed = time.monotonic()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            # Its node leaves routing; the stream on it ends broken, with an
            # error event (never a clean end); the other goes on to its end.
            self.assertTrue(wait_for(
                lambda: ("shared", one.node) not in (running(proxy) or {}), 10))
            took("SIGKILL: the node out of routing", killed)
            one.wait()
            # A broken stream (never [DONE]), which says why first.
            self.assertNotIn(b"[DONE]", one.body)
            self.assertIn(b'data: {"error":', one.body)
            two.wait()
            self.assertIsNone(two.error)
            self.assertIn(b"data: [DONE]", two.body)
            # The next requests go to the nodes that are left.
            for _ in range(3):
                status, node, body = complete(proxy, "shared")
                self.assertEqual(status, 200, body)
                self.assertNotEqual(node, one.node)
        finally:
            proxy.stop()
            for m in nodes:
                m.stop()


if __name__ == "__main__":
    junit.main()
