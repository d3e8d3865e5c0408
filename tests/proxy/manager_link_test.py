"""modelproxy against a scripted fake manager (Python grpcio): what the
proxy does with replies the real manager gives only under races."""

import concurrent.futures
import hashlib
import queue
import threading
import time
import unittest

import grpc

from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

from modelplane.v1 import model_manager_pb2 as pb
from modelplane.v1 import model_manager_pb2_grpc as pb_grpc


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


class FakeManager(pb_grpc.ModelManagerServicer):
    """Watch sends a BOOKMARK at the start and on bookmark(); ListModels
    answers call n with plan[n] = (api keys, gate): after the gate is set,
    if there is one."""

    def __init__(self, plan):
        self.plan = plan
        self.lock = threading.Lock()
        self.started = 0
        self.answered = []
        self._events = queue.Queue()
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(16))
        pb_grpc.add_ModelManagerServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def bookmark(self):
        self._events.put(pb.WatchEvent(type=pb.WatchEvent.TYPE_BOOKMARK, revision=1))

    def Watch(self, request, context):
        yield pb.WatchEvent(type=pb.WatchEvent.TYPE_BOOKMARK, revision=1)
        while context.is_active():
            try:
                yield self._events.get(timeout=0.1)
            except queue.Empty:
                pass

    def Acquire(self, request_iterator, context):
        for _ in request_iterator:  # Holds the stream open; grants nothing.
            pass
        return
        yield  # A generator: a stream of no responses.

    def ListModels(self, request, context):
        with self.lock:
            n = self.started
            self.started += 1
        keys, gate = self.plan[min(n, len(self.plan) - 1)]
        if gate is not None:
            gate.wait(30)
        with self.lock:
            self.answered.append(n)
        return pb.ListModelsResponse(revision=1, api_key_sha256=[sha(k) for k in keys])


class KeysReplyOrderTest(unittest.TestCase):
    def test_an_older_list_answering_last_does_not_win(self):
        # Reloads B then C reach the proxy as two BOOKMARKs: two ListModels
        # calls. B's answer (keys k2) comes after C's (k3): the proxy must
        # keep k3, the keys of the later call.
        gate = threading.Event()
        fake = FakeManager([(["k1"], None), (["k2"], gate), (["k3"], None)])
        p = ProxyProcess(fake.port, workers=1)

        def status(key):
            headers = {"Authorization": "Bearer " + key} if key else {}
            return p.request("GET", "/v1/models", headers=headers)[0]

        try:
            self.assertTrue(wait_for(lambda: status("k1") == 200, 20))
            self.assertEqual(status(""), 401)
            fake.bookmark()
            self.assertTrue(wait_for(lambda: fake.started == 2, 20))
            fake.bookmark()
            self.assertTrue(wait_for(lambda: status("k3") == 200, 20))
            self.assertEqual(status("k1"), 401)
            gate.set()  # B answers now, last.
            self.assertTrue(wait_for(lambda: 1 in fake.answered, 20))
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                self.assertEqual(status("k2"), 401)
                self.assertEqual(status("k3"), 200)
                time.sleep(0.05)
            # A later reload still applies.
            fake.plan.append((["k4"], None))
            fake.bookmark()
            self.assertTrue(wait_for(lambda: status("k4") == 200, 20))
        finally:
            p.stop()
            fake.server.stop(0)


if __name__ == "__main__":
    junit.main()
