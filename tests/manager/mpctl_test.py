"""mpctl, run as a binary against a real modelmanager."""

import json
import re
import signal
import subprocess
import threading
import unittest

from modelplane.v1 import model_manager_pb2 as pb
from tests.manager.manager_proc import ManagerProcess, alive, free_port_block
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for


class MpctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess({"good": ["--ready-line", "server is listening"],
                                "broken": ["--exit-immediately", "3"],
                                "spare": []})
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def mpctl(self, *args, manager=None):
        p = subprocess.run([runfile("client/mpctl"), "--manager",
                            manager or "127.0.0.1:%d" % self.m.port] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_version_and_single_dash_flags(self):
        code, out, err = self.mpctl("-version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^mpctl \d+\.\d+\.\d+ \(commit ")
        code, out, err = self.mpctl("-json", "ls")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(json.loads(out)["models"]), 3)

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

    def test_plan_says_what_a_start_would_evict_and_starts_nothing(self):
        code, out, err = self.mpctl("start", "good")
        self.assertEqual(code, 0, err)

        def states():
            out = self.mpctl("--json", "ls")[1]
            return {m["id"]: m.get("state") for m in json.loads(out)["models"]}
        before = states()
        try:
            code, out, err = self.mpctl("plan", "good")
            self.assertEqual((code, out), (0, "good is READY: no start needed\n"), err)
            # One model at a time (no groups): spare would evict good, idle.
            code, out, err = self.mpctl("plan", "spare")
            self.assertEqual(code, 0, err)
            self.assertIn("a start evicts idle models only", out)
            self.assertIn("evict good READY, 0 lease holder(s)", out)
            code, out, _ = self.mpctl("--json", "plan", "spare")
            plan = json.loads(out)
            self.assertEqual(plan["cost"], "COST_EVICT_IDLE")
            self.assertEqual([e["model"] for e in plan["evictions"]], ["good"])
            self.assertTrue(plan["needs_start"])
            self.assertEqual(self.mpctl("plan", "nope")[0], 3)
            # Asking started and evicted nothing.
            self.assertEqual(states(), before)
            self.assertEqual(before["good"], "MODEL_STATE_READY")
            # A start known to fail at once is a refusal, with its reason.
            self.mpctl("start", "broken")
            code, out, err = self.mpctl("plan", "broken")
            self.assertEqual(code, 0, err)
            self.assertIn("a start would be refused here", out)
            self.assertIn("not tried again", out)
            self.mpctl("start", "good")
        finally:
            self.mpctl("stop", "good")

    def test_drain_refuses_starts_serves_what_is_ready_and_shows_in_watch(self):
        code, out, err = self.mpctl("start", "good")
        self.assertEqual(code, 0, err)
        watch = self.m.stub().Watch(pb.WatchRequest(include_settings=True), timeout=60)
        try:
            code, out, err = self.mpctl("drain")
            self.assertEqual((code, out), (0, "draining: no model starts on this manager\n"), err)
            # Watch tells a data plane (its settings, with draining set).
            drained = False
            for e in watch:
                if e.type == pb.WatchEvent.TYPE_SETTINGS and e.settings.draining:
                    drained = True
                    break
            self.assertTrue(drained)
            # ls says so; so does ListModels.
            self.assertIn("(draining: no model starts on this manager)", self.mpctl("ls")[1])
            self.assertTrue(json.loads(self.mpctl("--json", "ls")[1])["draining"])
            # A start is refused; a READY model stays served.
            code, _, err = self.mpctl("start", "broken")
            self.assertEqual(code, 4, err)
            self.assertIn("draining", err)
            code, out, err = self.mpctl("start", "good")
            self.assertEqual(code, 0, err)
        finally:
            watch.cancel()
            code, out, err = self.mpctl("resume")
            self.assertEqual((code, out), (0, "not draining: models start on this manager\n"), err)
            self.mpctl("stop", "good")

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
        # What the model is doing, not a bare DEADLINE_EXCEEDED.
        self.assertEqual(err, "mpctl: good is STOPPED, not READY, after 1s (wait does "
                              "not start it: mpctl start does)\n")

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
        # One plain sentence, not gRPC's chain of causes.
        self.assertEqual(err, "mpctl: cannot reach modelmanager at 127.0.0.1:1 "
                              "(connection refused); is it running, and is --manager "
                              "(or $MODELPLANE_MANAGER) its address?\n")

    def test_reload(self):
        code, out, _ = self.mpctl("reload")
        self.assertEqual(code, 0)
        self.assertEqual(out, "reloaded: added -, removed -, restarting -, updated -\n")


class WatchAndLogsTest(unittest.TestCase):
    """What mpctl watch and mpctl logs show a person."""

    def test_watch_prints_states_with_durations_and_failures(self):
        with ManagerProcess({"w1": ["--ready-after-ms", "300"],
                             "w2": ["--exit-immediately", "3"]}) as m:
            mpctl = [runfile("client/mpctl"), "--manager", "127.0.0.1:%d" % m.port]
            watch = subprocess.Popen(mpctl + ["watch"], stdout=subprocess.PIPE,
                                     text=True)
            revs = subprocess.Popen(mpctl + ["watch", "--revisions", "w1"],
                                    stdout=subprocess.PIPE, text=True)
            try:
                lines, rev_lines = [], []
                threading.Thread(target=lambda: lines.extend(watch.stdout),
                                 daemon=True).start()
                threading.Thread(target=lambda: rev_lines.extend(revs.stdout),
                                 daemon=True).start()
                self.assertTrue(wait_for(lambda: len(lines) >= 2, 10), lines)
                subprocess.run(mpctl + ["start", "w1"], capture_output=True, timeout=60)
                subprocess.run(mpctl + ["stop", "w1"], capture_output=True, timeout=60)
                subprocess.run(mpctl + ["start", "w2"], capture_output=True, timeout=60)
                self.assertTrue(wait_for(lambda: any("w2 FAILED" in l for l in lines), 10),
                                lines)
                self.assertTrue(wait_for(lambda: any("w1 STOPPED in" in l for l in lines),
                                         10), lines)
            finally:
                watch.terminate()
                revs.terminate()
                watch.wait(10)
                revs.wait(10)
            text = [l.rstrip("\n") for l in lines]
            time = r"^\d\d:\d\d:\d\d\.\d{3} "
            for line in text:
                self.assertRegex(line, time)  # Wall clock first, no revisions.
            body = [l[13:] for l in text]
            self.assertEqual(body[:2], ["w1 STOPPED", "w2 STOPPED"])
            w1 = [b for b in body if b.startswith("w1 ")]
            self.assertTrue(any(re.match(r"^w1 STARTING pid \d+", b) for b in w1), w1)
            # How long the start took: at least its 300 ms.
            self.assertTrue(any(re.match(r"^w1 READY in (0\.[3-9]|[1-9]\d*\.\d) s "
                                         r"pid \d+", b) for b in w1), w1)
            self.assertTrue(any(re.match(r"^w1 STOPPING pid \d+", b) for b in w1), w1)
            self.assertTrue(any(re.match(r"^w1 STOPPED in \d+\.\d s$", b) for b in w1), w1)
            failed = [b for b in body if b.startswith("w2 FAILED")]
            self.assertRegex(failed[0], r"^w2 FAILED in \d+\.\d s(, queued 1)?: "
                                        r"EXITED_DURING_START exit 3: exited before it "
                                        r"was ready$")
            # No line says again what the one before it said.
            for model in ("w1 ", "w2 "):
                mine = [b for b in body if b.startswith(model)]
                self.assertTrue(all(a != b for a, b in zip(mine, mine[1:])), mine)
            # --revisions: the revision before each line, bookmarks too.
            self.assertTrue(all(re.match(time + r"\d+ ", l) for l in rev_lines), rev_lines)
            self.assertTrue(any(" BOOKMARK" in l for l in rev_lines), rev_lines)

    def test_logs_mark_where_each_run_begins_and_ends(self):
        with ManagerProcess({"r": ["--ready-line", "up and running"]}) as m:
            mpctl = [runfile("client/mpctl"), "--manager", "127.0.0.1:%d" % m.port]
            for _ in range(2):
                subprocess.run(mpctl + ["start", "r"], capture_output=True, timeout=60)
                subprocess.run(mpctl + ["stop", "r"], capture_output=True, timeout=60)
            out = subprocess.run(mpctl + ["logs", "r"], capture_output=True, text=True,
                                 timeout=60).stdout.splitlines()
            stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC"
            marks = [l for l in out if l.startswith("[modelplane] ----")]
            self.assertEqual(len(marks), 4, out)
            for i in (0, 2):
                self.assertRegex(marks[i], r"^\[modelplane\] ---- r started, pid \d+, at "
                                 + stamp + " ----$")
                self.assertRegex(marks[i + 1], r"^\[modelplane\] ---- r \(pid \d+\) exited "
                                 r"\(.*\) at " + stamp + r" after .* ----$")
            # Each run's output lies between its marks.
            first_end = out.index(marks[1])
            self.assertTrue(any("up and running" in l for l in out[:first_end]))
            self.assertTrue(any("up and running" in l for l in out[first_end:]))


class ReloadPortsTest(unittest.TestCase):
    """${PORT}s survive a reload: adding or removing a model restarts no
    other, and `mpctl reload` says which models restart and why."""

    def mpctl(self, m, *args):
        p = subprocess.run([runfile("client/mpctl"), "--manager",
                            "127.0.0.1:%d" % m.port] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def config(self, start, models):
        fake = runfile("tools/fake_upstream/fake_upstream")
        lines = ["startPort: %d" % start, "models:"]
        for m, extra in models.items():
            lines += ["  %s:" % m,
                      "    cmd: %s --port ${PORT} --model %s%s" % (fake, m, extra),
                      "    proxy: http://127.0.0.1:${PORT}"]
        return "\n".join(lines) + "\n"

    def test_adding_and_removing_models_moves_no_port(self):
        start = free_port_block(4)
        m = ManagerProcess({})
        with open(m.config_path, "w") as f:
            f.write(self.config(start, {"a": "", "c": ""}))
        m.start()
        try:
            code, out, err = self.mpctl(m, "start", "c")
            self.assertEqual(code, 0, err)
            pid = m.model("c").pid
            self.assertEqual(m.model("c").upstream_url,
                             "http://127.0.0.1:%d" % (start + 1))
            # "b" sorts before "c": by startPort order alone c would move.
            with open(m.config_path, "w") as f:
                f.write(self.config(start, {"a": "", "b": "", "c": ""}))
            code, out, err = self.mpctl(m, "reload")
            self.assertEqual((code, out),
                             (0, "reloaded: added b, removed -, restarting -, "
                                 "updated -\n"), err)
            self.assertEqual(m.model("c").pid, pid)
            self.assertEqual(m.model("b").upstream_url,
                             "http://127.0.0.1:%d" % (start + 2))
            # Removing "a" moves nothing either.
            with open(m.config_path, "w") as f:
                f.write(self.config(start, {"b": "", "c": ""}))
            code, out, err = self.mpctl(m, "reload")
            self.assertEqual((code, out),
                             (0, "reloaded: added -, removed a, restarting -, "
                                 "updated -\n"), err)
            self.assertEqual(m.model("c").pid, pid)
            self.assertEqual(m.model("c").state, pb.MODEL_STATE_READY)
            # A changed command restarts it, and says so.
            with open(m.config_path, "w") as f:
                f.write(self.config(start, {"b": "", "c": " --tokens 2"}))
            code, out, err = self.mpctl(m, "reload")
            self.assertEqual((code, out),
                             (0, "reloaded: added -, removed -, restarting c, "
                                 "updated -\nrestarting c: cmd changed\n"), err)
        finally:
            m.stop()

    def test_a_null_models_mapping_is_refused_and_the_old_config_stays(self):
        start = free_port_block(2)
        m = ManagerProcess({})
        with open(m.config_path, "w") as f:
            f.write(self.config(start, {"a": ""}))
        m.start()
        try:
            self.assertEqual(self.mpctl(m, "start", "a")[0], 0)
            pid = m.model("a").pid
            # Every model commented out, and an unknown key (a warning).
            with open(m.config_path, "w") as f:
                f.write("startPort: %d\nhealthCheckTimout: 5\nmodels:\n"
                        "#  a:\n#    cmd: x\n" % start)
            code, out, err = self.mpctl(m, "reload")
            self.assertNotEqual(code, 0)
            self.assertIn("config.yaml:3:1: models: is empty (null)", err)
            self.assertIn("warning: ", err)
            self.assertIn("healthCheckTimout", err)
            # SIGHUP takes the same path: refused, at error level.
            m.proc.send_signal(signal.SIGHUP)
            self.assertTrue(m.wait_log(r" error reload rejected, the old config "
                                       r"stays in force: .*models: is empty"),
                            m.log())
            self.assertEqual(m.model("a").pid, pid)
            self.assertEqual(m.model("a").state, pb.MODEL_STATE_READY)
        finally:
            m.stop()


if __name__ == "__main__":
    junit.main()
