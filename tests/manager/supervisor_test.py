"""Nothing of a model outlives its supervisor, whatever kills it: the real
modelmanager running a model (escaping_model.py) with a child that ignores
SIGTERM in its process group and one in a session of its own holding a port.
"""

import os
import sys
import signal
import socket
import time
import unittest

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess, alive, free_port
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for


def children(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            out += [int(p) for p in f.read().split()]
    return out


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().rstrip(b"\0").split(b"\0")


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class SupervisorTest(unittest.TestCase):
    def start(self):
        """A manager running `esc`; returns (model pid, group child, session
        child, bare child, held port)."""
        hold = free_port()
        pidfile = os.path.join(self.m.tmp.name, "pids")
        with open(self.m.config_path, "w") as f:
            f.write("models:\n  esc:\n    cmd: /usr/bin/python3 %s %d %d %s\n"
                    "    proxy: http://127.0.0.1:%d\n" % (
                        runfile("tests/manager/escaping_model.py"), self.port, hold,
                        pidfile, self.port))
        self.m.start()
        model = self.m.stub().Start(pb.StartRequest(model="esc"), timeout=30)
        self.assertEqual(model.state, pb.MODEL_STATE_READY)
        self.assertTrue(wait_for(lambda: os.path.exists(pidfile), 10))
        with open(pidfile) as f:
            group_child, session_child, bare_child = [int(x) for x in f.read().split()]
        self.assertTrue(wait_for(lambda: not port_free(hold), 10))
        self.leftovers = [group_child, session_child, bare_child]
        return model.pid, group_child, session_child, bare_child, hold

    def jailed(self):
        """Whether the manager runs models in cgroups (else a child that
        clears its environment is beyond its reach once its supervisor is
        killed, and the test says so rather than pretend)."""
        line = self.m.wait_log(r"info models run (in|without) cgroups")
        self.assertTrue(line, self.m.log())
        print(line, file=sys.stderr)
        return "models run in cgroups" in line

    def setUp(self):
        self.port = free_port()
        self.m = ManagerProcess({})
        self.leftovers = []

    def tearDown(self):
        for pid in self.leftovers:  # A failed test leaks nothing either.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.m.stop()

    def supervisor(self):
        sups = [p for p in children(self.m.proc.pid) if comm(p) == "mp-supervisor"]
        self.assertEqual(len(sups), 1, children(self.m.proc.pid))
        return sups[0]

    def test_supervisors_carry_a_name_of_their_own(self):
        self.start()
        sup = self.supervisor()
        # `pkill modelmanager` (or -f) does not match it.
        self.assertEqual(cmdline(sup), [b"mp-supervisor esc"])
        self.assertEqual(comm(self.m.proc.pid), "modelmanager")

    def test_a_supervisor_killed_with_sigkill_leaves_nothing(self):
        model, group_child, session_child, bare_child, hold = self.start()
        os.kill(self.supervisor(), signal.SIGKILL)
        everyone = [model, group_child, session_child]
        if self.jailed():
            everyone.append(bare_child)
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in everyone), 10),
                        [p for p in everyone if alive(p)])
        self.assertTrue(wait_for(lambda: port_free(hold), 10))
        # The two children at least (the model too, when its parent-death
        # signal had not ended it yet).
        line = self.m.wait_log(
            r"warn model esc: its supervisor died \(killed by SIGKILL\) and left ")
        self.assertTrue(line, self.m.log())
        self.assertTrue(wait_for(
            lambda: self.m.model("esc").state == pb.MODEL_STATE_FAILED, 10))

    def test_manager_and_supervisors_killed_together_leave_nothing_past_the_next_start(self):
        model, group_child, session_child, bare_child, hold = self.start()
        jailed = self.jailed()
        # What `pkill -9 -f 'modelmanager|mp-supervisor'` does: no one is left
        # to kill the model's descendants...
        sup = self.supervisor()
        os.kill(self.m.proc.pid, signal.SIGKILL)
        os.kill(sup, signal.SIGKILL)
        self.m.proc.wait(10)
        self.assertTrue(wait_for(lambda: not alive(model), 10))  # PDEATHSIG.
        # ...until a manager starts: it sweeps them before it serves. (Any
        # manager does; another test's may have been first.)
        self.m.start()
        left = [group_child, session_child] + ([bare_child] if jailed else [])
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in left), 10),
                        self.m.log())
        self.assertTrue(wait_for(lambda: port_free(hold), 10))
        # The new manager starts the model on the same ports again.
        self.assertEqual(self.m.stub().Start(pb.StartRequest(model="esc"),
                                             timeout=30).state,
                         pb.MODEL_STATE_READY)

    def test_sigkill_of_the_manager_alone_kills_everything(self):
        model, group_child, session_child, bare_child, hold = self.start()
        sup = self.supervisor()
        os.kill(self.m.proc.pid, signal.SIGKILL)  # The supervisor survives it...
        self.m.proc.wait(10)
        # (The bare child reparented to the supervisor, a subreaper.)
        everyone = [sup, model, group_child, session_child, bare_child]
        # ...sees its lifeline close, and kills the whole spawn.
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in everyone), 10),
                        [p for p in everyone if alive(p)])
        self.assertTrue(wait_for(lambda: port_free(hold), 10))
        # The supervisor, its spawn's last, also removed the manager's cgroup.
        line = self.m.wait_log(r"info models run (in|without) cgroups")
        if "models run in cgroups under " in line:
            jail = line.split("models run in cgroups under ", 1)[1].split()[0]
            self.assertTrue(wait_for(lambda: not os.path.exists(jail), 10), jail)


if __name__ == "__main__":
    junit.main()
