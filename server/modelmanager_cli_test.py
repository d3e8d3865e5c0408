"""modelmanager --check and --print-config, run as a real process."""

import json
import os
import re
import subprocess
import tempfile
import unittest

from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile

BINARY = runfile("server/modelmanager")
EXAMPLE = runfile("examples/llama-swap-config.yaml")
LLAMA_SWAP_EXAMPLE = runfile("testdata/llama-swap/config.example.yaml")


def run(*args, env=None, config_text=None):
    full_env = {"PATH": "/usr/bin:/bin"}
    full_env.update(env or {})
    with tempfile.TemporaryDirectory() as tmp:
        args = list(args)
        if config_text is not None:
            path = os.path.join(tmp, "config.yaml")
            with open(path, "w") as f:
                f.write(config_text)
            args = [a.replace("{CONFIG}", path) for a in args]
        proc = subprocess.run([BINARY] + args, capture_output=True, text=True,
                              env=full_env, timeout=30)
        out = proc.stdout.replace(tmp + "/", "")
        err = proc.stderr.replace(tmp + "/", "")
        return proc.returncode, out, err


class CheckTest(unittest.TestCase):
    def test_check_valid_example_summarizes_each_model(self):
        code, out, err = run("--config", EXAMPLE, "--check", env={"MODELS_DIR": "/m"})
        self.assertEqual(code, 0, err)
        # Only warnings: the example's servers are not installed here.
        for line in err.splitlines():
            self.assertRegex(line, r"^warning: .*llama-swap-config\.yaml:\d+:\d+: "
                                   r"models\.[\w.-]+\.cmd: cannot run: ")
        self.assertIn("models.llama-8b.cmd: cannot run: /usr/local/bin/llama-server: "
                      "No such file or directory", err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 6)
        self.assertEqual(
            lines[0],
            "llama-8b\tgroup=big\tupstream=http://localhost:10001\targv="
            "/usr/local/bin/llama-server --host 127.0.0.1 --port 10001 --flash-attn on "
            "-m /m/Llama-3.1-8B-Instruct-Q8_0.gguf")
        self.assertTrue(lines[3].startswith(
            "vllm-qwen\tgroup=big\tupstream=http://127.0.0.1:8000\targv=docker run"))
        self.assertTrue(lines[-1].endswith("OK: 5 model(s), 2 group(s)"))

    def test_llama_swaps_config_example_passes_check(self):
        # llama-swap's own example, unchanged but for its pretend models:
        # the ones it names without defining (in its groups, selectors,
        # profiles and scheduler priorities) are given commands, and
        # "unlisted-model", whose command is a placeholder without the
        # ${PORT} its default proxy needs (llama-swap refuses it as it
        # stands too), is given one.
        with open(LLAMA_SWAP_EXAMPLE) as f:
            text = f.read()
        placeholder = "    cmd: some-upstream-server\n"
        self.assertEqual(text.count(placeholder), 1)
        text = text.replace(placeholder, "    cmd: some-upstream-server --port ${PORT}\n")
        pretend = ["qwen-unlisted", "modelA", "modelB", "forever-modelA",
                   "forever-modelB", "forever-modelc", "A", "B", "C", "D"]
        head = "\nmodels:\n"
        self.assertEqual(text.count(head), 1)
        text = text.replace(head, head + "".join(
            '  "%s":\n    cmd: /bin/sleep ${PORT}\n' % m for m in pretend))
        code, out, err = run("--config", "{CONFIG}", "--check", config_text=text,
                             env={"HOME": "/home/u", "API_KEY_1": "k1",
                                  "API_KEY_2": "k2", "OPENROUTER_API_KEY": "k3"})
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines()[-1], "config.yaml: OK: 13 model(s), 4 group(s)")
        # The settings modelplane does not have, each said once; the group
        # member that is a selector, left out with a warning.
        self.assertIn("groups.group1.members[0]: 'llama' is not a model; left out "
                      "of the group", err)
        for key in ("logTimeFormat", "captureBuffer", "performance"):
            self.assertIn("%s: llama-swap setting not supported by modelplane yet; "
                          "ignored" % key, err)
        # The https peer with its base path and its timeouts is taken whole.
        self.assertNotIn("peers.openrouter", err)

    def test_check_reports_missing_env_with_position_and_exits_2(self):
        code, out, err = run("--config", EXAMPLE, "--check")
        self.assertEqual(code, 2)
        self.assertEqual(out, "")
        self.assertIn(":14:13: macros.models: environment variable 'MODELS_DIR' is not set",
                      err)

    def test_check_reports_every_error_on_stderr(self):
        config = ("models:\n"
                  "  qwen:\n"
                  "    cmd: llama-server --port 9000\n"
                  "    proxy: http://127.0.0.1:${PORT}\n"
                  "  bad:\n"
                  "    cmd: run ${nope}\n"
                  "    proxy: http://h:1\n"
                  "  ok:\n"
                  "    cmd: /bin/sleep ${PORT}\n"
                  "groups:\n"
                  "  g: {members: [ok]}\n"
                  "  h: {members: [ok]}\n")
        code, out, err = run("--config", "{CONFIG}", "--check", config_text=config)
        self.assertEqual(code, 2)
        self.assertEqual(out, "")
        self.assertEqual(err.splitlines(), [
            "config.yaml:6:10: models.bad.cmd: unknown macro '${nope}'",
            "config.yaml:4:12: models.qwen.proxy: uses ${PORT} but cmd does not "
            "(${PORT} is assigned only to models whose cmd uses it)",
            "config.yaml:12:17: groups.h.members[0]: model 'ok' is already a "
            "member of group 'g' (a model is in at most one group)",
            "config.yaml: invalid: 3 error(s)",
        ])

    def test_warnings_go_to_stderr_and_do_not_fail(self):
        config = "models:\n  a:\n    cmd: x ${PORT}\n    tll: 5\n"
        code, out, err = run("--config", "{CONFIG}", "--check", config_text=config)
        self.assertEqual(code, 0, err)
        self.assertEqual(err, "warning: config.yaml:4:5: models.a.tll: unknown key; "
                              "ignored (did you mean 'ttl'?)\n"
                              "warning: config.yaml:2:3: models.a.cmd: cannot run: "
                              "x: not found in PATH (/usr/bin:/bin)\n")
        self.assertIn("a\tgroup=(default)\tupstream=http://localhost:5800\targv=x 5800", out)

    def test_a_command_that_cannot_run_is_a_warning(self):
        # A typo in the binary's name: the likeliest reason a start fails.
        config = ("models:\n  typo:\n    cmd: /usr/local/bin/fake_upstrem --port ${PORT}\n"
                  "  ok:\n    cmd: sh -c 'exec sleep 9' ${PORT}\n"
                  "  noexec:\n    cmd: /etc/passwd ${PORT}\n")
        code, out, err = run("--config", "{CONFIG}", "--check", config_text=config)
        self.assertEqual(code, 0, err)
        self.assertEqual(err.splitlines(), [
            "warning: config.yaml:6:3: models.noexec.cmd: cannot run: "
            "/etc/passwd: not an executable file",
            "warning: config.yaml:2:3: models.typo.cmd: cannot run: "
            "/usr/local/bin/fake_upstrem: No such file or directory",
        ])
        self.assertIn("OK: 3 model(s)", out)

    def test_argv_words_are_quoted_for_the_shell(self):
        config = "models:\n  a:\n    cmd: \"run 'two words' ${PORT}\"\n"
        code, out, _ = run("--config", "{CONFIG}", "--check", config_text=config)
        self.assertEqual(code, 0)
        self.assertIn("argv=run 'two words' 5800", out)


class PrintConfigTest(unittest.TestCase):
    def test_print_config_is_resolved_json(self):
        code, out, err = run("--config", EXAMPLE, "--print-config",
                             env={"MODELS_DIR": "/m"})
        self.assertEqual(code, 0, err)
        doc = json.loads(out)
        models = {m["id"]: m for m in doc["models"]}
        self.assertEqual(models["qwen3-coder"]["port"], 10003)
        self.assertEqual(models["qwen3-coder"]["metadata"], {"context": 16384,
                                                             "tags": ["coding", "moe"]})
        # Paths, in the order written, once each.
        self.assertEqual(models["qwen3-coder"]["filters"]["stripParams"],
                         ["temperature", "top_p", "top_k"])
        self.assertEqual(models["vllm-qwen"]["cmdStop"], ["docker", "stop", "vllm-qwen"])
        self.assertEqual(models["whisper"]["ttl"], 0)
        self.assertEqual(models["llama-8b"]["ttl"], 600)
        self.assertEqual(doc["preload"], ["nomic-embed"])
        self.assertEqual([g["id"] for g in doc["groups"]], ["big", "always-on"])

    def test_api_keys_are_redacted(self):
        config = "apiKeys: [sk-secret]\nmodels:\n  a: {cmd: 'x ${PORT}'}\n"
        code, out, _ = run("--config", "{CONFIG}", "--print-config", config_text=config)
        self.assertEqual(code, 0)
        self.assertNotIn("sk-secret", out)
        self.assertEqual(json.loads(out)["apiKeys"], ["<redacted>"])


class UsageTest(unittest.TestCase):
    def test_llama_swaps_single_dash_forms_and_version(self):
        # As a llama-swap user types them (Go's flag package).
        code, out, err = run("-config", EXAMPLE, "-check", env={"MODELS_DIR": "/m"})
        self.assertEqual(code, 0, err)
        self.assertTrue(out.splitlines()[-1].endswith("OK: 5 model(s), 2 group(s)"))
        for flag in ("--version", "-version"):
            code, out, err = run(flag)
            self.assertEqual(code, 0, err)
            with open(runfile("VERSION")) as f:
                version = f.read().strip()
            self.assertRegex(out, r"^modelmanager %s \(commit ([0-9a-f]{12}(-dirty)?|unknown), "
                                  r"built \d{4}-\d\d-\d\dT" % re.escape(version))

    def test_usage_errors_exit_2(self):
        for args, message in (
                ([], "--config FILE or --config-dir DIR is required"),
                (["--config", EXAMPLE, "--log-format", "xml"],
                 "--log-format must be text or json"),
                (["--config", EXAMPLE, "--log-level", "verbose"],
                 "--log-level must be debug, info, warn or error"),
                (["--bogus"], "unknown flag --bogus"),
        ):
            code, _, err = run(*args)
            self.assertEqual(code, 2, args)
            self.assertIn("modelmanager: " + message, err)
            self.assertIn("usage: modelmanager", err)

    def test_a_client_ca_without_a_certificate_is_an_error(self):
        code, _, err = run("--config", "{CONFIG}", "--listen", "127.0.0.1:0",
                           "--tls-client-ca", "/ca.pem",
                           config_text="models:\n  a:\n    cmd: /bin/true ${PORT}\n")
        self.assertEqual(code, 2, err)
        self.assertIn("--tls-client-ca needs --tls-cert and --tls-key", err)

    def test_unreadable_file(self):
        code, _, err = run("--config", "/nonexistent.yaml", "--check")
        self.assertEqual(code, 2)
        self.assertIn("/nonexistent.yaml: cannot read the file", err)


if __name__ == "__main__":
    junit.main()
