"""Another service's view, as a Python grpcio client: it waits for a model
with WaitReady, asks PlanStart what a start would cost, and follows Watch
while inference traffic flows through modelproxy and starts, serves and
swaps the models."""

import json
import threading
import unittest

import grpc

from tests.manager.manager_proc import ManagerProcess
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import wait_for

from modelplane.v1 import model_manager_pb2 as pb

READY = pb.MODEL_STATE_READY


class GrpcClientTest(unittest.TestCase):
    def test_wait_ready_and_watch_follow_proxy_traffic(self):
        with ManagerProcess({"a": ["--ready-after-ms", "300", "--tokens", "3"],
                             "b": ["--tokens", "3"]}) as m:
            p = ProxyProcess(m.port, workers=2)
            stub = m.stub()
            events = []
            watch = stub.Watch(pb.WatchRequest())

            def follow():
                try:
                    for e in watch:
                        events.append((e.type, e.model.id, e.model.state,
                                       e.model.active_leases))
                except grpc.RpcError:
                    pass  # Cancelled at the end.
            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            try:
                # The feed is live (its snapshot ended) before any traffic:
                # else a's start could land in the snapshot, not as events.
                self.assertTrue(wait_for(lambda: any(
                    t == pb.WatchEvent.TYPE_BOOKMARK for t, *_ in events), 10))
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                # The service waits for "a" before anyone started it ...
                waited = {}

                def wait_ready():
                    waited["model"] = stub.WaitReady(pb.WaitReadyRequest(model="a"),
                                                     timeout=30)
                waiter = threading.Thread(target=wait_ready)
                waiter.start()
                # ... and a chat completion through the proxy starts it.
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "a", "messages": []})
                self.assertEqual(status, 200, body)
                waiter.join(30)
                self.assertEqual(waited["model"].state, READY)
                # The proxy's lease shows while it holds it.
                self.assertTrue(wait_for(lambda: any(
                    t == pb.WatchEvent.TYPE_MODIFIED and mid == "a" and leases >= 1
                    for t, mid, _, leases in events), 10))
                # Before it does, PlanStart says what starting "b" would
                # cost here: evicting "a" (held by the proxy's lease while
                # it lingers, or idle once released), and it starts nothing.
                plan = stub.PlanStart(pb.PlanStartRequest(model="b"), timeout=10)
                self.assertTrue(plan.needs_start)
                self.assertEqual([e.model for e in plan.evictions], ["a"])
                self.assertIn(plan.cost, (pb.PlanStartResponse.COST_EVICT_IDLE,
                                          pb.PlanStartResponse.COST_EVICT_BUSY))
                self.assertEqual(stub.GetModel(pb.GetModelRequest(model="b")).state,
                                 pb.MODEL_STATE_STOPPED)
                self.assertFalse(stub.PlanStart(pb.PlanStartRequest(model="a"),
                                                timeout=10).needs_start)
                # Traffic for "b" swaps "a" out (no groups: one at a time).
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "b", "messages": []})
                self.assertEqual(status, 200, body)
                self.assertEqual(stub.WaitReady(pb.WaitReadyRequest(model="b"),
                                                timeout=10).state, READY)
                self.assertTrue(wait_for(lambda: any(
                    mid == "a" and state == pb.MODEL_STATE_STOPPED
                    for t, mid, state, _ in events[-20:]), 10))
                # The order "a" went through, as Watch told it.
                states_a = [s for t, mid, s, _ in events
                            if mid == "a" and t == pb.WatchEvent.TYPE_MODIFIED]
                order = [pb.MODEL_STATE_STARTING, READY, pb.MODEL_STATE_STOPPING,
                         pb.MODEL_STATE_STOPPED]
                # (Before its start, "a" changes while STOPPED: queued counts.)
                first = states_a.index(pb.MODEL_STATE_STARTING)
                seen = [s for s in states_a[first:] if s in order]
                deduped = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
                self.assertEqual(deduped, order, json.dumps(states_a))
            finally:
                watch.cancel()
                p.stop()


if __name__ == "__main__":
    junit.main()
