"""The Debian package as an operator meets it: lintian finds no error in it;
it installs; the installed programs say their version; the packaged config
passes `modelmanager --check`; the stack starts from the installed files (the
packaged modelplane.service's command, as its user, on a loopback port) and
serves requests; a purge leaves nothing behind.

It installs into this machine's system (it runs as root in CI, on a fresh
machine); where modelplane is already installed it does not touch it."""

import http.client
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import unittest

from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

DEB = runfile("deploy/debian/modelplane.deb")
PROGRAMS = ["modelplane", "modelmanager", "modelproxy", "mpctl"]


# dpkg and its maintainer scripts need the sbin directories (ldconfig,
# adduser), which the tests' PATH leaves out.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*args, timeout=120):
    env = dict(os.environ, PATH=SYSTEM_PATH)
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, env=env)


def installed():
    out = run("dpkg-query", "-W", "-f=${db:Status-Status}", "modelplane")
    return out.returncode == 0 and out.stdout == "installed"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exec_start(unit_path):
    """The unit's ExecStart as argv (continuation lines joined) and its User."""
    with open(unit_path) as f:
        text = f.read().replace("\\\n", " ")
    argv = user = None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line[len("ExecStart="):])
        if line.startswith("User="):
            user = line[len("User="):].strip()
    return argv, user


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class LintianTest(unittest.TestCase):
    def test_lintian_reports_no_error_and_no_warning(self):
        if shutil.which("lintian") is None:
            self.fail("lintian is not installed (tools/bootstrap.sh test installs it)")
        out = run("lintian", "--fail-on", "error,warning", DEB, timeout=240)
        tags = [l for l in out.stdout.splitlines() if l[:2] in ("E:", "W:")]
        self.assertEqual(tags, [], out.stdout)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


@unittest.skipIf(os.geteuid() != 0, "installing a package needs root")
@unittest.skipIf(shutil.which("dpkg") is None, "not a Debian system")
class DebianPackageTest(unittest.TestCase):
    def test_install_run_purge(self):
        if installed():
            self.skipTest("modelplane is installed on this machine; the test "
                          "would remove it")
        out = run("dpkg", "-i", DEB)
        try:
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            files = run("dpkg", "-L", "modelplane").stdout.splitlines()
            self.check_installed(files)
        finally:
            purge = run("dpkg", "--purge", "modelplane")
        self.assertEqual(purge.returncode, 0, purge.stdout + purge.stderr)
        self.assertFalse(installed())
        # Every file it installed is gone; of its directories, those that
        # are its own (/usr/bin and the like stay, with other packages').
        left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
        self.assertEqual(left, [])
        for d in ("/etc/modelplane", "/usr/share/doc/modelplane"):
            self.assertFalse(os.path.exists(d), d)
        with self.assertRaises(KeyError):
            pwd.getpwnam("modelplane")
        self.assertNotIn("/etc/modelplane/config.yaml",
                         run("dpkg-statoverride", "--list").stdout)
        self.assertNotIn("modelplane:", open("/etc/group").read())

    def check_installed(self, files):
        for p in PROGRAMS:
            self.assertIn("/usr/bin/" + p, files)
        for unit in ("modelmanager", "modelproxy", "modelplane"):
            self.assertIn(f"/lib/systemd/system/{unit}.service", files)
        self.assertIn("/etc/modelplane/config.yaml", files)
        self.assertIn("/usr/share/doc/modelplane/config.md.gz", files)
        with open(runfile("VERSION")) as f:
            version = f.read().strip()
        for p in PROGRAMS:
            out = run("/usr/bin/" + p, "--version")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"^%s %s \(commit " % (p, re.escape(version)))
        user = pwd.getpwnam("modelplane")
        self.assertEqual(user.pw_dir, "/nonexistent")
        # The config may hold apiKeys: root and the units' group only.
        st = os.stat("/etc/modelplane/config.yaml")
        self.assertEqual(st.st_mode & 0o777, 0o640)
        self.assertEqual(st.st_gid, user.pw_gid)

        check = run("/usr/bin/modelmanager", "--check", "--config",
                    "/etc/modelplane/config.yaml")
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("OK: 1 model(s)", check.stdout)

        # The packaged unit's command, its user, a loopback port.
        argv, user = exec_start("/lib/systemd/system/modelplane.service")
        self.assertEqual(argv[0], "/usr/bin/modelplane")
        self.assertEqual(user, "modelplane")
        port = free_port()
        argv = [a if not a.startswith("0.0.0.0:") else f"127.0.0.1:{port}"
                for a in argv]
        self.assertIn(f"127.0.0.1:{port}", argv)
        env = {k: v for k, v in os.environ.items()
               if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")}
        env["PATH"] = SYSTEM_PATH
        # As the unit's user (and its group), the process itself: a signal
        # reaches it, not a wrapper.
        proc = subprocess.Popen(argv, user=user, group=user, extra_groups=[],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            def models():
                try:
                    status, body = get(port, "/v1/models")
                except OSError:
                    return None
                return body if status == 200 else None
            body = wait_for(models, 30)
            self.assertIsNotNone(body, proc.poll())
            data = json.loads(body)["data"]
            self.assertEqual([m["id"] for m in data], ["example"])
            status, body = get(port, "/running")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["running"], [])
            status, _ = get(port, "/ui/")
            self.assertEqual(status, 200)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
            log = proc.stderr.read()
        self.assertEqual(rc, 0, log)
        for line in log.splitlines():
            json.loads(line)  # --log-format json, the unit's
        self.assertIn('"msg":"stopped"', log)
        # Nothing of the user's left running.
        uid = pwd.getpwnam("modelplane").pw_uid
        def owned():
            return [p for p in os.listdir("/proc")
                    if p.isdigit() and self.owner(p) == uid]
        wait_for(lambda: not owned(), 10)
        self.assertEqual(owned(), [])

    @staticmethod
    def owner(pid):
        try:
            return os.stat(f"/proc/{pid}").st_uid
        except OSError:
            return None


if __name__ == "__main__":
    junit.main()
