"""The Python stubs that tests use build, import and match the contract."""

import unittest

from modelplane.v1 import model_manager_pb2 as pb
from modelplane.v1 import model_manager_pb2_grpc as pb_grpc
from tools.testing import junit


class PythonStubsTest(unittest.TestCase):
    def test_stub_has_every_rpc(self):
        service = pb.DESCRIPTOR.services_by_name["ModelManager"]
        names = {m.name for m in service.methods}
        self.assertEqual(names, {"Start", "Stop", "WaitReady", "Watch", "ListModels",
                                 "GetModel", "PlanStart", "Drain", "StreamLogs",
                                 "StopAll", "ReloadConfig", "Acquire"})
        for name in names:
            self.assertTrue(hasattr(pb_grpc.ModelManagerStub, "__init__"))
            self.assertTrue(hasattr(pb_grpc.ModelManagerServicer, name), name)

    def test_model_round_trips(self):
        m = pb.Model(id="qwen", aliases=["q", "qw"], state=pb.MODEL_STATE_READY,
                     upstream_url="http://127.0.0.1:5800", pid=42, revision=7)
        back = pb.Model.FromString(m.SerializeToString())
        self.assertEqual(back, m)
        self.assertEqual(pb.ModelState.Name(back.state), "MODEL_STATE_READY")


if __name__ == "__main__":
    junit.main()
