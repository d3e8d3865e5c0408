"""mpctl, run as a binary against a real modelmanager."""

import json
import subprocess
import unittest

from tests.manager.manager_proc import ManagerProcess, alive
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile


class MpctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess({"good": ["--ready-line", "server is listening"],
                                "broken": ["--exit-immediately", "3"]})
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def mpctl(self, *args, manager=None):
        p = subprocess.run([runfile("client/mpctl"), "--manager",
                            manager or "127.0.0.1:%d" % self.m.port] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_ls_table(self):
        code, out, _ = self.mpctl("ls")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("ID"))
        self.assertIn("UPSTREAM", lines[0])
        self.assertTrue(any(l.startswith("good ") and "http://127.0.0.1:" in l
                            for l in lines[1:]), out)

    def test_start_stop_and_json(self):
        code, out, err = self.mpctl("start", "good")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^good READY pid \d+ at http://127\.0\.0\.1:\d+ ")
        code, out, _ = self.mpctl("--json", "ls")
        models = {m["id"]: m for m in json.loads(out)["models"]}
        self.assertEqual(models["good"]["state"], "MODEL_STATE_READY")
        pid = models["good"]["pid"]
        code, out, _ = self.mpctl("stop", "good")
        self.assertEqual((code, out), (0, "good STOPPED\n"))
        self.assertFalse(alive(pid))

    def test_failed_start_prints_the_reason_and_last_lines(self):
        code, _, err = self.mpctl("start", "broken")
        self.assertEqual(code, 1)
        self.assertIn("FAILED_PRECONDITION", err)
        self.assertIn("exit code 3", err)
        self.assertIn("last output of broken:", err)
        self.assertIn("exiting at once with code 3", err)
        code, out, _ = self.mpctl("ls")
        self.assertTrue(any(l.startswith("broken ") and "EXITED_DURING_START exit 3" in l
                            for l in out.splitlines()), out)

    def test_wait_times_out_with_code_5(self):
        self.mpctl("stop", "good")
        code, _, err = self.mpctl("wait", "good", "--timeout", "1")
        self.assertEqual(code, 5, err)

    def test_logs_show_the_models_output(self):
        self.assertEqual(self.mpctl("start", "good")[0], 0)
        code, out, _ = self.mpctl("logs", "good")
        self.assertEqual(code, 0)
        self.assertIn("server is listening", out)

    def test_error_exit_codes(self):
        self.assertEqual(self.mpctl("start", "nope")[0], 3)
        self.assertEqual(self.mpctl("frobnicate")[0], 2)
        self.assertEqual(self.mpctl("start")[0], 2)
        code, _, err = self.mpctl("ls", manager="127.0.0.1:1")
        self.assertEqual(code, 4, err)

    def test_reload(self):
        code, out, _ = self.mpctl("reload")
        self.assertEqual(code, 0)
        self.assertEqual(out, "reloaded: added -, removed -, restarting -, updated -\n")


if __name__ == "__main__":
    junit.main()
