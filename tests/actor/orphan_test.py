"""No orphans: when the manager dies, even by SIGKILL, every model process
and every descendant dies with it (the per-model supervisors see their
lifeline close and kill their model's whole group)."""

import os
import signal
import socket
import subprocess
import unittest

from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read (ESRCH).
        return False


def children(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            out += [int(p) for p in f.read().split()]
    return out


class OrphanTest(unittest.TestCase):
    def test_sigkill_of_the_manager_leaves_no_descendant(self):
        harness = subprocess.Popen(
            [runfile("tests/actor/orphan_harness"),
             runfile("tools/fake_upstream/fake_upstream"),
             str(free_port()), str(free_port())],
            stdout=subprocess.PIPE, text=True)
        try:
            pids = []
            for line in harness.stdout:
                if line.startswith("model ") or line.startswith("grandchild "):
                    pids.append(int(line.split()[-1]))
                if line.strip() == "ready":
                    break
            self.assertEqual(len(pids), 3, pids)
            self.assertTrue(all(p > 0 for p in pids), pids)
            supervisors = children(harness.pid)
            self.assertEqual(len(supervisors), 2, supervisors)
            everyone = pids + supervisors
            self.assertTrue(all(alive(p) for p in everyone))
            # The models ignore SIGTERM and one has a grandchild holding its
            # pipes: the hardest case to clean up.
            harness.send_signal(signal.SIGKILL)
            harness.wait(10)
            self.assertTrue(wait_for(lambda: not any(alive(p) for p in everyone), 10),
                            [p for p in everyone if alive(p)])
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()


if __name__ == "__main__":
    junit.main()
