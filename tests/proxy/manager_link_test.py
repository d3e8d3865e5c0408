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
    """Watch sends the settings (API keys) and a BOOKMARK at the start, and
    whatever reload() queues; ListModels is counted (a data plane takes its
    settings from the Watch stream, so it should never be called)."""

    def __init__(self, keys):
        self.keys = keys
        self.lock = threading.Lock()
        self.listed = 0
        self.watch_requests = []
        self._events = queue.Queue()
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(16))
        pb_grpc.add_ModelManagerServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @staticmethod
    def settings(keys, revision):
        return pb.WatchEvent(
            type=pb.WatchEvent.TYPE_SETTINGS, revision=revision,
            settings=pb.DataPlaneSettings(api_key_sha256=[sha(k) for k in keys]))

    def reload(self, *events):
        for e in events:
            self._events.put(e)

    def Watch(self, request, context):
        with self.lock:
            self.watch_requests.append(request)
        yield self.settings(self.keys, 1)
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
            self.listed += 1
        return pb.ListModelsResponse(revision=1)


class SettingsOrderTest(unittest.TestCase):
    def test_settings_apply_in_the_watch_streams_order(self):
        # Two reloads in quick succession (keys k2, then k3): the proxy ends
        # with k3, the later one, whatever the timing: the settings travel
        # on the Watch stream, in its order, with no call of their own.
        fake = FakeManager(["k1"])
        p = ProxyProcess(fake.port, workers=1)

        def status(key):
            headers = {"Authorization": "Bearer " + key} if key else {}
            return p.request("GET", "/v1/models", headers=headers)[0]

        try:
            self.assertTrue(wait_for(lambda: status("k1") == 200, 20))
            self.assertEqual(status(""), 401)
            self.assertTrue(fake.watch_requests[0].include_settings)
            bookmark = pb.WatchEvent(type=pb.WatchEvent.TYPE_BOOKMARK, revision=1)
            fake.reload(fake.settings(["k2"], 1), bookmark,
                        fake.settings(["k3"], 1), bookmark)
            self.assertTrue(wait_for(lambda: status("k3") == 200, 20))
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                self.assertEqual(status("k1"), 401)
                self.assertEqual(status("k2"), 401)
                self.assertEqual(status("k3"), 200)
                time.sleep(0.05)
            # A later reload still applies.
            fake.reload(fake.settings(["k4"], 1), bookmark)
            self.assertTrue(wait_for(lambda: status("k4") == 200, 20))
            self.assertEqual(fake.listed, 0)
        finally:
            p.stop()
            fake.server.stop(0)


if __name__ == "__main__":
    junit.main()
