"""modelproxy end to end: the real manager and proxy binaries, fake_upstream
models, and HTTP clients (http.client, raw sockets, curl)."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from tests.manager.manager_proc import ManagerProcess, free_port
from tests.proxy.proxy_proc import ProxyProcess
from tools.testing import junit
from tools.testing.fake_upstream_proc import runfile, wait_for

from modelplane.v1 import model_manager_pb2 as pb


def upstream_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stats")
    return json.loads(conn.getresponse().read())


def sse_text(body):
    text = ""
    for event in body.decode().split("\n\n"):
        if event.startswith("data: {"):
            chunk = json.loads(event[6:])
            choice = chunk["choices"][0] if chunk["choices"] else {}
            text += choice.get("delta", {}).get("content", "") or choice.get("text", "")
    return text


class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ManagerProcess(
            {"alpha": ["--tokens", "5"], "beta": ["--tokens", "7"],
             "slow": ["--tokens", "200", "--tokens-per-second", "50"]},
            model_yaml={
                "alpha": ["    aliases: [gpt-4o-mini]",
                          "    filters:",
                          "      stripParams: temperature, chat_template_kwargs.drop",
                          "      setParams: {top_k: 20, chat_template_kwargs.enable_thinking: false}",
                          "      setParamsByID:",
                          "        '${MODEL_ID}:hot': {top_k: 80, min_p: 0.1, seed: 9007199254740993}"],
                "beta": ["    useModelName: upstream-beta", "    name: Beta",
                         "    description: the second model"],
                "slow": ["    concurrencyLimit: 1"],
            },
            extra_yaml="groups:\n  side: {members: [slow], exclusive: false}\n")
        cls.m.start()
        cls.p = ProxyProcess(cls.m.port)
        # The proxy's route table arrives through Watch.
        assert wait_for(lambda: cls.p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10)

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.m.stop()

    def chat(self, model, stream=False, **extra):
        body = dict({"model": model, "messages": [{"role": "user", "content": "hi"}],
                     "stream": stream}, **extra)
        return self.p.request("POST", "/v1/chat/completions", body)

    def test_health_and_models_list(self):
        status, headers, body = self.p.request("GET", "/health")
        self.assertEqual((status, body), (200, b"OK"))  # As llama-swap.
        types = [v for k, v in headers.items() if k.lower() == "content-type"]
        self.assertTrue(types[0].startswith("text/plain"), headers)
        status, _, body = self.p.request("GET", "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]]
        self.assertEqual(ids, ["alpha", "beta", "slow"])
        # Metadata where llama-swap's clients read it.
        self.assertTrue(all("llamaswap" in m["meta"] for m in json.loads(body)["data"]))
        beta = json.loads(body)["data"][1]
        self.assertEqual((beta["object"], beta["name"], beta["description"]),
                         ("model", "Beta", "the second model"))
        # status.value follows the model: loaded once it runs (the proxy
        # hears it through Watch), unloaded once it is stopped.

        def status_of(model):
            data = json.loads(self.p.request("GET", "/v1/models")[2])["data"]
            return next(m["status"]["value"] for m in data if m["id"] == model)
        self.assertEqual(self.chat("alpha")[0], 200)
        self.assertTrue(wait_for(lambda: status_of("alpha") == "loaded", 10))
        self.m.stub().Stop(pb.StopRequest(model="alpha", force=True), timeout=20)
        self.assertTrue(wait_for(lambda: status_of("alpha") == "unloaded", 10))
        # Local answers one after another on one keep-alive connection.
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=10)
        try:
            for path in ["/health", "/v1/models", "/running", "/health", "/nope"]:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 404 if path == "/nope" else 200)
        finally:
            conn.close()

    def test_completion_starts_the_model_on_demand(self):
        status, headers, body = self.chat("alpha")
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ")
        self.assertEqual(headers["X-Fake-Upstream-Model"], "alpha")

    def test_streaming_is_identical_to_a_direct_request(self):
        status, headers, body = self.chat("gpt-4o-mini", stream=True)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/event-stream")
        self.assertEqual(headers["X-Accel-Buffering"], "no")
        self.assertEqual(sse_text(body), "tok0 tok1 tok2 tok3 tok4 ")
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"))
        direct = http.client.HTTPConnection("127.0.0.1", self.m.ports["alpha"], timeout=10)
        direct.request("POST", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
             "stream": True, "top_k": 20}))
        direct_body = direct.getresponse().read()
        strip = lambda b: re.sub(rb'"(id|created|predicted_ms|predicted_per_second)":[^,}]*', b"", b)
        self.assertEqual(strip(body), strip(direct_body))

    def test_filters_reach_the_upstream(self):
        self.chat("alpha", temperature=0.9, chat_template_kwargs={"drop": 1, "keep": 2})
        last = json.loads(upstream_stats(self.m.ports["alpha"])["last_body"])
        self.assertNotIn("temperature", last)
        self.assertEqual(last["top_k"], 20)
        # sjson paths, as llama-swap's filters take them.
        self.assertEqual(last["chat_template_kwargs"], {"keep": 2, "enable_thinking": False})
        self.chat("beta")
        last = json.loads(upstream_stats(self.m.ports["beta"])["last_body"])
        self.assertEqual(last["model"], "upstream-beta")
        headers = upstream_stats(self.m.ports["beta"])["last_headers"]
        self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")

    def test_set_params_by_id_follows_the_name_requested(self):
        # llama-swap's setParamsByID: the name is an alias of the model, and
        # its params go on top of setParams only when asked for by it.
        status, _, _ = self.chat("alpha:hot")
        self.assertEqual(status, 200)
        last = json.loads(upstream_stats(self.m.ports["alpha"])["last_body"])
        self.assertEqual((last["model"], last["top_k"], last["min_p"]),
                         ("alpha:hot", 80, 0.1))
        # The config's numbers exactly (2^53 + 1: a double would say ...992).
        self.assertEqual(last["seed"], 9007199254740993)
        self.chat("alpha")
        last = json.loads(upstream_stats(self.m.ports["alpha"])["last_body"])
        self.assertEqual(last["top_k"], 20)
        self.assertNotIn("min_p", last)
        status, _, body = self.p.request("GET", "/v1/models")
        self.assertNotIn(b"alpha:hot", body)  # An alias: not listed.

    def test_bodiless_upstream_answers_keep_the_connection_in_step(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=30)
        try:
            for path, method, status in [("/upstream/alpha/status/204", "GET", 204),
                                         ("/upstream/alpha/status/304", "GET", 304),
                                         ("/upstream/alpha/v1/models", "HEAD", 200),
                                         ("/upstream/alpha/v1/models", "GET", 200)]:
                conn.request(method, path)
                r = conn.getresponse()
                self.assertEqual((r.status, r.read() if method == "HEAD" or status != 200
                                  else r.read()[:1]),
                                 (status, b"" if method == "HEAD" or status != 200 else b"{"))
                if status in (204, 304):
                    self.assertIsNone(r.getheader("Transfer-Encoding"))
        finally:
            conn.close()
        # Raw: nothing follows a 204's head (no stray last chunk).
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        s.sendall(b"GET /upstream/alpha/status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b'\r\n\r\nOK'):
            chunk = s.recv(4096)
            self.assertTrue(chunk, got)
            got += chunk
        s.close()
        first, rest = got.split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 204"), got)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200"), got)

    def test_pipelined_requests_to_one_model_are_answered_in_order(self):
        # Each answer ends inside the upstream parser; the next request then
        # reuses the same upstream connection (a use-after-free once).
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        reqs = b""
        for i in range(4):
            body = json.dumps({"model": "alpha", "messages": [], "max_tokens": i + 1}).encode()
            reqs += (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.sendall(reqs)
        got = b""
        while got.count(b'"finish_reason"') < 4:
            chunk = s.recv(65536)
            self.assertTrue(chunk, got)
            got += chunk
        s.close()
        texts = re.findall(rb'"content":"([^"]*)"', got)
        self.assertEqual(texts, [b"tok0 ", b"tok0 tok1 ", b"tok0 tok1 tok2 ",
                                 b"tok0 tok1 tok2 tok3 "])

    def test_a_slow_reader_leaves_no_paused_upstream_in_the_pool(self):
        # A large answer read slowly pauses the upstream read; the connection
        # must read again once back in the pool, or the next request hangs.
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
            body = json.dumps({"model": "beta", "messages": [], "max_tokens": 300000}).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.3)  # The proxy queues > 1 MiB and pauses the upstream.
            got = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                if got > 2_000_000 and chunk.endswith(b"}"):
                    break
            s.close()
            status, _, _ = self.p.request("POST", "/v1/chat/completions",
                                          {"model": "beta", "messages": []}, timeout=10)
            self.assertEqual(status, 200)

    def test_curl_streams_and_uploads_through_the_proxy(self):
        url = "http://127.0.0.1:%d" % self.p.port
        out = subprocess.run(
            ["curl", "-sS", "-N", "--fail-with-body", url + "/v1/chat/completions",
             "-H", "Content-Type: application/json",
             "-d", json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": []})],
            capture_output=True, timeout=30, check=True)
        self.assertEqual(sse_text(out.stdout), "tok0 tok1 tok2 tok3 tok4 ")
        self.assertTrue(out.stdout.endswith(b"data: [DONE]\n\n"))
        # A multipart upload of 3 MiB (curl sends Expect: 100-continue).
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            f.write(os.urandom(3 << 20))
            f.flush()
            out = subprocess.run(
                ["curl", "-sS", "--fail-with-body", url + "/v1/audio/transcriptions",
                 "-F", "model=beta", "-F", "file=@%s" % f.name],
                capture_output=True, timeout=30, check=True)
        doc = json.loads(out.stdout)
        # useModelName rewrote the form's model on the way.
        self.assertEqual((doc["model"], doc["file_bytes"]), ("upstream-beta", 3 << 20))

    def test_upstream_passthrough(self):
        status, _, body = self.p.request("GET", "/upstream/beta/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"][0]["id"], "beta")

    def test_llama_swap_routes_reach_the_upstream_as_llama_swap_sends_them(self):
        last_path = lambda: upstream_stats(self.m.ports["alpha"])["last_path"]
        body = {"model": "gpt-4o-mini", "messages": []}
        # Body routes beyond the OpenAI ones; the upstream answers what it
        # knows (the fake: only /v1/... chat, completions, embeddings).
        # Every body route the issue names, then llama-swap's extra ones.
        for path, upstream in (("/v1/completions", "/v1/completions"),
                               ("/v1/responses", "/v1/responses"),
                               ("/v1/embeddings", "/v1/embeddings"),
                               ("/v1/rerank", "/v1/rerank"),
                               ("/v1/images/generations", "/v1/images/generations"),
                               ("/v1/messages", "/v1/messages"),
                               ("/completion", "/completion"), ("/infill", "/infill"),
                               ("/v1/messages/count_tokens", "/v1/messages/count_tokens"),
                               ("/rerank", "/rerank"), ("/v1/reranking", "/v1/reranking"),
                               ("/sdapi/v1/txt2img", "/sdapi/v1/txt2img"),
                               ("/v/chat/completions", "/chat/completions"),
                               ("/v/messages/count_tokens", "/messages/count_tokens"),
                               ("/audioapi/v1/tasks/run", "/v1/tasks/run")):
            status, _, _ = self.p.request("POST", path, body)
            # The fake's own answer (400: an embedding with no input); the
            # path it saw shows the request got there.
            self.assertIn(status, (200, 400, 404), path)
            self.assertEqual(last_path(), upstream, path)
        # A urlencoded form names its model as a field.
        status, _, _ = self.p.request(
            "POST", "/v1/audio/speech", "input=hi&model=gpt%2D4o%2Dmini",
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(last_path(), "/v1/audio/speech")
        self.assertEqual(upstream_stats(self.m.ports["alpha"])["last_body"],
                         "input=hi&model=gpt%2D4o%2Dmini")
        # JSON labelled a form (curl -d does it) is still JSON.
        status, _, _ = self.p.request(
            "POST", "/v1/chat/completions", json.dumps(body),
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, last_path()), (200, "/v1/chat/completions"))
        status, _, body = self.p.request(
            "POST", "/v1/audio/speech", "input=hi",
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, json.loads(body)["error"]["message"]),
                         (400, "the form has no model field"))
        # ?model= is decoded (an alias with an escaped '-').
        status, _, _ = self.p.request("GET", "/v1/audio/voices?model=gpt%2D4o%2Dmini")
        self.assertTrue(last_path().startswith("/v1/audio/voices"), last_path())
        self.assertEqual(self.p.request("GET", "/wol-health")[0], 200)
        # /upstream/<model> redirects to /upstream/<model>/ (query kept).
        status, headers, _ = self.p.request("GET", "/upstream/beta?x=1")
        self.assertEqual((status, headers["Location"]), (301, "/upstream/beta/?x=1"))
        status, headers, _ = self.p.request("POST", "/upstream/beta", {})
        self.assertEqual((status, headers["Location"]), (308, "/upstream/beta/"))
        # llama-swap's UI API to unload one model (by an alias) or all.
        self.assertEqual(self.chat("alpha")[0], 200)
        status, _, body = self.p.request("POST", "/api/models/unload/gpt-4o-mini")
        self.assertEqual((status, json.loads(body)["stopped"]), (200, ["alpha"]))
        self.assertEqual(self.p.request("POST", "/api/models/unload/nope")[0], 404)
        status, _, body = self.p.request("POST", "/api/models/unload")
        self.assertEqual(status, 200)

    def test_upstream_ignore_paths_never_start_a_model(self):
        # llama-swap's default upstream.ignorePaths: a model's web UI asking
        # for its favicon gets 409 while the model is not loaded, and does
        # not start it; once it is loaded, the request goes through.
        self.assertEqual(self.p.request("POST", "/unload?model=beta")[0], 200)
        status, _, body = self.p.request("GET", "/upstream/beta/favicon.ico")
        self.assertEqual(status, 409, body)
        self.assertIn("upstream.ignorePaths", json.loads(body)["error"]["message"])
        self.assertEqual(self.m.model("beta").state, pb.MODEL_STATE_STOPPED)
        self.assertEqual(self.chat("beta")[0], 200)
        self.assertTrue(wait_for(lambda: self.p.request(
            "GET", "/upstream/beta/favicon.ico")[0] != 409, 10))
        self.assertEqual(upstream_stats(self.m.ports["beta"])["last_path"], "/favicon.ico")
        # A path that matches nothing starts the model as before.
        self.assertEqual(self.p.request("POST", "/unload?model=beta")[0], 200)
        self.assertEqual(self.p.request("GET", "/upstream/beta/v1/models")[0], 200)

    def test_errors_in_the_openai_envelope(self):
        status, _, body = self.chat("nope")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["type"], "not_found_error")
        status, _, body = self.p.request("POST", "/v1/chat/completions", "{bad")
        self.assertEqual(status, 400)
        self.assertIn("invalid JSON", json.loads(body)["error"]["message"])
        status, _, body = self.p.request("POST", "/v1/chat/completions", "{}")
        self.assertEqual((status, json.loads(body)["error"]["message"]),
                         (400, "the request body names no model"))
        status, _, _ = self.p.request("GET", "/nothing/here")
        self.assertEqual(status, 404)
        # A model name that is not UTF-8 is named in the error, and the error
        # is still valid JSON (the bytes become U+FFFD).
        for raw in (b'{"model":"x\xff\xfey"}', b'{"model":"\x01\x02"}'):
            status, _, body = self.p.request("POST", "/v1/chat/completions", raw)
            self.assertIn(status, (400, 404), body)
            self.assertIn("message", json.loads(body.decode("utf-8"))["error"])

    def raw_exchange(self, data, port=None):
        """`data` on a new connection; what the proxy answers until it closes."""
        s = socket.create_connection(("127.0.0.1", port or self.p.port), timeout=30)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # Answered and closed before all of it was read.
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def assert_refused(self, reply, status, message):
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), reply[:300])
        self.assertIn(b"\r\nConnection: close", head)
        self.assertIn(message, json.loads(body)["error"]["message"].encode())

    def test_malformed_and_oversized_requests_are_refused_on_a_raw_socket(self):
        chat = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        for data, status, message in [
                (b"GARBAGE\r\n\r\n", 400, "malformed HTTP request"),
                (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400,
                 "malformed HTTP request"),
                # A proxy framing by one header and an upstream by another
                # is request smuggling: whitespace before the colon is a 400.
                (chat + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
                 'invalid header field "Transfer-Encoding "'),
                (chat + b"X-A: 1\r\n folded\r\n\r\n", 400, "folded"),
                (chat + b"Content-Length: abc\r\n\r\n", 400, "malformed HTTP request"),
                (chat + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
                 "malformed HTTP request"),
                (chat + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
                 "malformed chunked body: a chunk line must start with its size"),
                (chat + b"X-Big: " + b"a" * (80 << 10) + b"\r\n\r\n", 431,
                 "the request head is larger than allowed"),
                # Well-formed HTTP, bad JSON: the connection could go on;
                # the client asks to close it.
                (chat + b"Connection: close\r\nContent-Length: 20\r\n\r\n"
                 b"{\"model\": \"alpha\",,}", 400, "invalid JSON")]:
            with self.subTest(data=data[:60]):
                self.assert_refused(self.raw_exchange(data), status, message.encode())
        # Nothing else was disturbed.
        status, _, body = self.chat("alpha")
        self.assertEqual(status, 200, body)
        _, _, metrics = self.p.request("GET", "/metrics")
        self.assertRegex(metrics.decode(), r'modelproxy_requests_total\{[^}]*status="431"[^}]*\} [1-9]')

    def test_a_chunked_request_body_reaches_the_model_whole(self):
        body = json.dumps({"model": "beta", "messages": [
            {"role": "user", "content": "x" * 5000}]}).encode()
        pieces = [body[i:i + 777] for i in range(0, len(body), 777)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        reply = self.raw_exchange(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply[:300])
        # What the model got: the same JSON (useModelName rewrote the name).
        stats = upstream_stats(self.m.ports["beta"])
        got = json.loads(stats["last_body"])
        self.assertEqual(got["model"], "upstream-beta")
        self.assertEqual(got["messages"], json.loads(body)["messages"])

    def test_expect_100_continue_is_answered_before_the_body_is_sent(self):
        body = json.dumps({"model": "alpha", "messages": []}).encode()
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            # Nothing more is sent until the interim answer comes.
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                chunk = s.recv(1)
                self.assertTrue(chunk, interim)
                interim += chunk
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(body)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += s.recv(65536)
            self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)
        finally:
            s.close()

    def test_bodies_over_the_limit_get_413_and_one_at_the_limit_goes_through(self):
        p = ProxyProcess(self.m.port, workers=1, flags=["--max-body-mib", "1"])
        try:
            self.assertTrue(wait_for(
                lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10))
            chat = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            # Refused from the head alone: the body is never sent.
            self.assert_refused(
                self.raw_exchange(chat + b"Content-Length: %d\r\n\r\n" % ((1 << 20) + 1),
                                  p.port), 413, b"the request body is larger than allowed")
            # Chunked: refused once the chunks pass the limit.
            chunks = b"".join(b"10000\r\n" + b"x" * 0x10000 + b"\r\n" for _ in range(17))
            self.assert_refused(
                self.raw_exchange(chat + b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
                                  p.port), 413, b"the request body is larger than allowed")
            # Exactly the limit: served.
            body = json.dumps({"model": "alpha", "messages": [
                {"role": "user", "content": ""}]})
            body = body.replace('"content": ""', '"content": "%s"' % (
                "x" * ((1 << 20) - len(body))))
            self.assertEqual(len(body), 1 << 20)
            status, _, reply = p.request("POST", "/v1/chat/completions", body)
            self.assertEqual(status, 200, reply)
        finally:
            p.stop()

    def test_swap_under_concurrent_mixed_traffic_keeps_every_response_whole(self):
        results = []
        lock = threading.Lock()

        def worker(model, n):
            for _ in range(n):
                status, _, body = self.chat(model, stream=True)
                with lock:
                    results.append((model, status, sse_text(body), body.endswith(b"[DONE]\n\n")))

        threads = [threading.Thread(target=worker, args=(m, 6))
                   for m in ("alpha", "beta", "alpha", "beta")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(results), 24)
        want = {"alpha": "tok0 tok1 tok2 tok3 tok4 ",
                "beta": "tok0 tok1 tok2 tok3 tok4 tok5 tok6 "}
        for model, status, text, complete in results:
            self.assertEqual(status, 200)
            self.assertEqual(text, want[model])
            self.assertTrue(complete)

    def test_upstream_connections_are_kept_alive_and_reused(self):
        # One worker: its pool to alpha is used again and again.
        p = ProxyProcess(self.m.port, workers=1)
        try:
            self.assertTrue(wait_for(
                lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10))
            body = {"model": "alpha", "messages": []}
            self.assertEqual(p.request("POST", "/v1/chat/completions", body)[0], 200)
            before = upstream_stats(self.m.ports["alpha"])["connections_accepted"]
            for stream in [False, True] * 10:
                status, _, _ = p.request("POST", "/v1/chat/completions",
                                         dict(body, stream=stream))
                self.assertEqual(status, 200)
            # The twenty requests (each on a new client connection) came on
            # the pooled connection (and the /stats calls on their own).
            after = upstream_stats(self.m.ports["alpha"])["connections_accepted"]
            self.assertEqual(after - before, 1)
        finally:
            p.stop()

    def test_client_disconnect_reaches_the_upstream(self):
        self.m.stub().Start(pb.StartRequest(model="slow"), timeout=20)
        before = upstream_stats(self.m.ports["slow"])["client_disconnects"]
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        body = json.dumps({"model": "slow", "stream": True, "messages": []}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        got = b""
        while b"tok1" not in got:
            got += s.recv(4096)
        s.close()
        self.assertTrue(wait_for(lambda: upstream_stats(self.m.ports["slow"])[
            "client_disconnects"] == before + 1, 10))
        self.assertTrue(wait_for(lambda: upstream_stats(self.m.ports["slow"])[
            "in_flight"] == 0, 10))

    def test_concurrency_limit_answers_429(self):
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=30)
        body = json.dumps({"model": "slow", "stream": True, "messages": []}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        got = b""
        while b"tok0" not in got:
            got += s.recv(4096)
        status, headers, body = self.chat("slow")
        s.close()
        self.assertEqual(status, 429)
        self.assertEqual(headers["Retry-After"], "1")
        self.assertEqual(json.loads(body)["error"]["type"], "rate_limit_error")

    def test_a_thousand_requests_on_a_held_lease_make_no_control_plane_call(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=30)
        body = json.dumps({"model": "alpha", "messages": []})
        conn.request("POST", "/v1/chat/completions", body)
        conn.getresponse().read()
        before = self.m.model("alpha").revision
        for _ in range(1000):
            conn.request("POST", "/v1/chat/completions", body)
            self.assertEqual(conn.getresponse().read()[:1], b"{")
        after = self.m.model("alpha")
        conn.close()
        # No acquire or release reached the manager: the model did not change.
        self.assertEqual(after.revision, before)
        self.assertEqual(after.active_leases, 1)


    def test_running_and_unload(self):
        self.assertEqual(self.chat("alpha")[0], 200)
        self.assertTrue(wait_for(lambda: b'"model":"alpha"' in self.p.request(
            "GET", "/running")[2], 10))
        status, _, body = self.p.request("POST", "/unload?model=gpt-4o-mini")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "ok", "stopped": ["alpha"]})
        self.assertEqual(self.m.model("alpha").state, pb.MODEL_STATE_STOPPED)
        self.assertEqual(self.p.request("POST", "/unload?model=nope")[0], 404)
        self.assertEqual(self.chat("beta")[0], 200)
        status, _, body = self.p.request("POST", "/unload")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(json.loads(body)["stopped"]), ["alpha", "beta", "slow"])
        self.assertEqual(json.loads(self.p.request("GET", "/running")[2]), {"running": []})


class ApiKeyTest(unittest.TestCase):
    def test_api_keys_are_required_checked_and_not_forwarded(self):
        import base64
        with ManagerProcess({"a": []}, extra_yaml="apiKeys: [sk-one, sk-two]\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                body = {"model": "a", "messages": []}
                ok = {"Authorization": "Bearer sk-one"}
                self.assertTrue(wait_for(lambda: p.request(
                    "POST", "/v1/chat/completions", body)[0] == 401, 10))
                status, headers, _ = p.request("POST", "/v1/chat/completions", body)
                # Basic, as llama-swap answers (a browser asks for the key);
                # Bearer to a script's request (the web UI's).
                self.assertEqual(headers["WWW-Authenticate"], 'Basic realm="modelplane"')
                status, headers, _ = p.request("POST", "/v1/chat/completions", body,
                                               {"X-Requested-With": "XMLHttpRequest"})
                self.assertEqual(status, 401)
                self.assertEqual(headers["WWW-Authenticate"], 'Bearer realm="modelplane"')
                self.assertEqual(p.request("GET", "/health")[0], 200)
                self.assertEqual(p.request("POST", "/v1/chat/completions", body,
                                           {"Authorization": "Bearer nope"})[0], 401)
                self.assertEqual(p.request("POST", "/v1/chat/completions", body, ok)[0], 200)
                self.assertEqual(p.request("POST", "/v1/chat/completions", body,
                                           {"x-api-key": "sk-two"})[0], 200)
                basic = base64.b64encode(b"user:sk-one").decode()
                self.assertEqual(p.request("POST", "/v1/chat/completions", body,
                                           {"Authorization": "Basic " + basic})[0], 200)
                seen = upstream_stats(m.ports["a"])["last_headers"]
                self.assertNotIn("authorization", seen)
                self.assertNotIn("x-api-key", seen)
                # A reload that changes the keys reaches the proxy.
                m.write_config(extra_yaml="apiKeys: [sk-new]\n")
                m.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: p.request(
                    "POST", "/v1/chat/completions", body,
                    {"Authorization": "Bearer sk-new"})[0] == 200, 15))
                self.assertEqual(p.request("POST", "/v1/chat/completions", body, ok)[0], 401)
            finally:
                p.stop()

    def test_cors_preflight_comes_before_auth_and_answers_carry_the_origin(self):
        with ManagerProcess({"a": []}, extra_yaml="apiKeys: [sk-one]\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                ok = {"Authorization": "Bearer sk-one", "Origin": "http://app.example"}
                self.assertTrue(wait_for(lambda: p.request(
                    "GET", "/v1/models", headers=ok)[2].count(b'"id"') == 1, 10))
                s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                s.sendall(b"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Origin: http://app.example\r\n"
                          b"Access-Control-Request-Method: POST\r\n"
                          b"Access-Control-Request-Headers: content-type, authorization, "
                          b"<script>\"x\"\r\n\r\n"
                          b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b"OK"):
                    got += s.recv(4096)
                s.close()
                preflight, rest = got.split(b"\r\n\r\n", 1)
                self.assertTrue(preflight.startswith(b"HTTP/1.1 204"), got)
                self.assertIn(b"Access-Control-Allow-Origin: http://app.example", preflight)
                self.assertIn(b"Access-Control-Allow-Headers: content-type, authorization, "
                              b"scriptx\r\n", preflight)
                self.assertIn(b"Access-Control-Allow-Methods: GET, POST", preflight)
                # No framing header on a 204: the next response follows at once.
                self.assertNotIn(b"Content-Length", preflight)
                self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest)
                status, headers, _ = p.request("POST", "/v1/chat/completions",
                                               {"model": "a", "messages": []}, ok)
                self.assertEqual(status, 200)
                self.assertEqual(headers["Access-Control-Allow-Origin"], "http://app.example")
                status, headers, _ = p.request("GET", "/v1/models", headers=ok)
                self.assertEqual(headers["Access-Control-Allow-Origin"], "http://app.example")
                self.assertEqual(headers["Vary"], "Origin")
                self.assertNotIn("Access-Control-Allow-Origin",
                                 p.request("GET", "/health")[1])
            finally:
                p.stop()


class AliasesInListTest(unittest.TestCase):
    def test_include_aliases_in_list_lists_each_alias_and_follows_a_reload(self):
        model_yaml = {"q": ["    aliases: [qwen]", "    filters:",
                            "      setParamsByID:",
                            "        '${MODEL_ID}:think': {think: true}"],
                      "hidden": ["    aliases: [h2]", "    unlisted: true"]}
        with ManagerProcess({"q": [], "hidden": []}, model_yaml=model_yaml,
                            extra_yaml="includeAliasesInList: true\n") as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                def ids():
                    status, _, body = p.request("GET", "/v1/models")
                    return [e["id"] for e in json.loads(body)["data"]] if status == 200 else []
                # Sorted by id, as llama-swap lists them; an alias entry
                # carries its model's name.
                self.assertTrue(wait_for(lambda: ids() == ["q", "q:think", "qwen"], 10), ids())
                status, _, body = p.request("GET", "/v1/models")
                entry = json.loads(body)["data"][1]
                self.assertEqual((entry["name"], entry["object"]), ("q", "model"))
                # Off again by a reload: the proxy hears of it (a bookmark).
                m.write_config(extra_yaml="")
                m.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: ids() == ["q"], 15), ids())
            finally:
                p.stop()


class TimeoutAndDrainTest(unittest.TestCase):
    def test_slow_header_or_body_gets_408_and_idle_connections_close(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port, workers=1,
                             flags=["--header-timeout-ms", "300", "--idle-timeout-ms", "300",
                                    "--body-timeout-ms", "300"])
            try:
                slow = socket.create_connection(("127.0.0.1", p.port), timeout=20)
                slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # Never ends.
                reply = slow.recv(4096)
                self.assertTrue(reply.startswith(b"HTTP/1.1 408"), reply)
                self.assertEqual(slow.recv(4096), b"")  # Closed after.
                idle = socket.create_connection(("127.0.0.1", p.port), timeout=20)
                idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(idle.recv(4096).startswith(b"HTTP/1.1 200"))
                self.assertEqual(idle.recv(4096), b"")  # The idle timeout closed it.
                stalled = socket.create_connection(("127.0.0.1", p.port), timeout=20)
                stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: 100\r\n\r\n{\"model\"")
                reply = stalled.recv(4096)
                self.assertTrue(reply.startswith(b"HTTP/1.1 408"), reply)
                self.assertIn(b"request body", reply)
                stalled.sendall(b"x" * 92)  # Too late: never dispatched.
                self.assertEqual(stalled.recv(4096), b"")
            finally:
                p.stop()

    def test_a_client_that_stops_reading_is_cut_off_and_its_lease_freed(self):
        with ManagerProcess({"s": ["--tokens", "5"]}) as m:
            p = ProxyProcess(m.port, workers=1, flags=["--send-timeout-ms", "400"])
            try:
                self.assertTrue(wait_for(
                    lambda: b'"s"' in p.request("GET", "/v1/models")[2], 10))
                stuck = socket.socket()
                stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stuck.connect(("127.0.0.1", p.port))
                body = json.dumps({"model": "s", "stream": True, "messages": [],
                                   "max_tokens": 5000000}).encode()
                stuck.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                # Never read: the kernel buffers fill, then the proxy's queue.

                def in_flight():
                    text = p.request("GET", "/metrics")[2].decode()
                    return metric(parse_metrics(text), "modelproxy_in_flight", model="s")
                self.assertTrue(wait_for(lambda: in_flight() == 1, 10))
                self.assertTrue(wait_for(lambda: in_flight() == 0, 20))
                # The upstream learnt that its client left.
                self.assertTrue(wait_for(
                    lambda: upstream_stats(m.ports["s"])["client_disconnects"] >= 1, 10))
                stuck.close()
            finally:
                p.stop()

    def test_sigterm_lets_responses_in_flight_finish(self):
        with ManagerProcess({"s": ["--tokens", "20", "--tokens-per-second", "40"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            self.assertTrue(wait_for(lambda: b'"s"' in p.request("GET", "/v1/models")[2], 10))
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
            conn.request("POST", "/v1/chat/completions",
                         json.dumps({"model": "s", "stream": True, "messages": []}))
            resp = conn.getresponse()
            first = resp.read1(100)
            self.assertTrue(first.startswith(b"data:"), first)
            p.proc.send_signal(signal.SIGTERM)
            rest = resp.read()
            self.assertEqual(sse_text(first + rest), "".join("tok%d " % i for i in range(20)))
            self.assertTrue(rest.endswith(b"data: [DONE]\n\n"))
            self.assertEqual(p.proc.wait(30), 0)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", p.port), timeout=5)


    def test_sigterm_while_requests_wait_for_a_lease_exits_cleanly(self):
        # The requests wait on the broker (the model takes 100 s to start)
        # when the proxy stops: ending the manager link answers them, into
        # worker loops that must still be there (they were freed first, a
        # use-after-free, before the seventh session).
        with ManagerProcess({"late": ["--ready-after-ms", "100000"]}) as m:
            p = ProxyProcess(m.port, workers=2, flags=["--drain-seconds", "1"])
            self.assertTrue(wait_for(lambda: b'"late"' in p.request("GET", "/v1/models")[2], 10))
            answers = []

            def ask():
                try:
                    answers.append(p.request("POST", "/v1/chat/completions",
                                             {"model": "late", "messages": []})[0])
                except OSError as e:
                    answers.append(e)
            threads = [threading.Thread(target=ask) for _ in range(4)]
            for t in threads:
                t.start()
            self.assertTrue(wait_for(lambda: m.model("late").queued_requests > 0
                                     or m.model("late").state == pb.MODEL_STATE_STARTING, 10))
            p.stop()  # Exit code 0, no handle left open, within 20 s.
            for t in threads:
                t.join(30)
            self.assertEqual(len(answers), 4)

    def test_sigterm_refuses_new_connections_and_cuts_what_outlives_the_budget(self):
        # 200 tokens at 10/s: far longer than the 1 s drain budget.
        with ManagerProcess({"s": ["--tokens", "200", "--tokens-per-second", "10"]}) as m:
            p = ProxyProcess(m.port, workers=1, flags=["--drain-seconds", "1"])
            self.assertTrue(wait_for(lambda: b'"s"' in p.request("GET", "/v1/models")[2], 10))
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
            conn.request("POST", "/v1/chat/completions",
                         json.dumps({"model": "s", "stream": True, "messages": []}))
            resp = conn.getresponse()
            first = resp.read1(100)
            self.assertTrue(first.startswith(b"data:"), first)
            p.proc.send_signal(signal.SIGTERM)
            self.assertTrue(p.wait_log("draining"), p.log())
            # Draining: the stream goes on, new connections are refused.
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", p.port), timeout=5)
            self.assertIsNone(p.proc.poll())
            # At the budget the stream is cut: a broken response (no final
            # chunk), never a clean end, and the model hears the client go.
            with self.assertRaises(http.client.IncompleteRead):
                resp.read()
            self.assertEqual(p.proc.wait(30), 0)
            self.assertIn("1 connection(s) cut at the drain deadline", "\n".join(p.log()))
            self.assertTrue(wait_for(
                lambda: upstream_stats(m.ports["s"])["client_disconnects"] == 1, 10))


class ManagerDownTest(unittest.TestCase):
    def test_requests_fail_fast_without_the_manager_and_recover(self):
        m = ManagerProcess({"a": []})
        m.start()
        p = ProxyProcess(m.port, workers=1)
        try:
            self.assertTrue(wait_for(
                lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
            self.assertEqual(p.request("POST", "/v1/completions", {"model": "a"})[0], 200)
            port = m.port
            m.proc.send_signal(signal.SIGTERM)
            m.proc.wait(30)
            # Fails fast (a hang would raise socket.timeout here).
            status, _, body = p.request("POST", "/v1/completions", {"model": "a"},
                                        timeout=10)
            self.assertEqual(status, 503, body)
            # The manager returns on the same port: the proxy reconnects.
            again = subprocess.Popen(
                [runfile("server/modelmanager"), "--config", m.config_path,
                 "--listen", "127.0.0.1:%d" % port], stderr=subprocess.DEVNULL)
            try:
                self.assertTrue(wait_for(lambda: p.request(
                    "POST", "/v1/completions", {"model": "a"})[0] == 200, 20))
            finally:
                again.send_signal(signal.SIGTERM)
                again.wait(30)
        finally:
            p.stop()
            m.stop()


class ProxyCliTest(unittest.TestCase):
    def test_a_sigterm_right_after_the_start_stops_it(self):
        # The manager link may still be opening its streams then: they must
        # be cancelled too, not waited for (it hung in 25 starts of 40).
        with ManagerProcess({"a": []}) as m:
            for _ in range(8):
                ProxyProcess(m.port, workers=1).stop()  # Exit 0 within 20 s.

    def test_an_unreadable_token_file_is_an_error_not_a_silent_404(self):
        for content in (None, "  \n"):
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "token")
                if content is not None:
                    with open(path, "w") as f:
                        f.write(content)
                out = subprocess.run(
                    [runfile("proxy/modelproxy"), "--listen", "127.0.0.1:0",
                     "--manager-token-file", path], capture_output=True, text=True,
                    timeout=20)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn(path, out.stderr)

    def test_a_second_proxy_on_a_taken_port_fails_instead_of_sharing_it(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port, workers=2)
            try:
                for listen in ("127.0.0.1:%d" % p.port, "[::ffff:127.0.0.1]:%d" % p.port):
                    out = subprocess.run(
                        [runfile("proxy/modelproxy"), "--listen", listen,
                         "--manager", "127.0.0.1:%d" % m.port],
                        capture_output=True, text=True, timeout=20)
                    self.assertEqual(out.returncode, 1, (listen, out.stderr))
                    self.assertIn("another modelproxy?", out.stderr)
                self.assertEqual(p.request("GET", "/health")[0], 200)
            finally:
                p.stop()

    def test_sighup_is_logged_and_the_proxy_goes_on(self):
        with ManagerProcess({"a": []}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                p.proc.send_signal(signal.SIGHUP)
                self.assertTrue(p.wait_log("SIGHUP: nothing to reload"), p.log())
                self.assertEqual(p.request("GET", "/health")[0], 200)
            finally:
                p.stop()


def self_signed(directory, name):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", "%s/%s.key" % (directory, name), "-out", "%s/%s.pem" % (directory, name),
         "-days", "1", "-subj", "/CN=%s" % name, "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return "%s/%s.pem" % (directory, name), "%s/%s.key" % (directory, name)


class TlsManagerTest(unittest.TestCase):
    def test_proxy_and_mpctl_reach_a_manager_over_mutual_tls(self):
        with tempfile.TemporaryDirectory() as d:
            server_pem, server_key = self_signed(d, "server")
            client_pem, client_key = self_signed(d, "client")
            with ManagerProcess({"a": []}, flags=["--tls-cert", server_pem,
                                                  "--tls-key", server_key,
                                                  "--tls-client-ca", client_pem]) as m:
                mpctl = [runfile("client/mpctl"), "--manager", "127.0.0.1:%d" % m.port,
                         "--json"]
                ok = subprocess.run(mpctl + ["--tls-ca", server_pem, "--tls-cert", client_pem,
                                             "--tls-key", client_key, "ls"],
                                    capture_output=True, text=True, timeout=30)
                self.assertEqual(ok.returncode, 0, ok.stderr)
                self.assertEqual([x["id"] for x in json.loads(ok.stdout)["models"]], ["a"])
                # Without the client certificate the manager refuses it.
                refused = subprocess.run(mpctl + ["--tls-ca", server_pem, "--timeout", "3",
                                                  "ls"],
                                         capture_output=True, text=True, timeout=30)
                self.assertNotEqual(refused.returncode, 0)
                # A certificate without its key (or a key alone) is a usage
                # error, never a silent fall back to cleartext.
                for half in (["--tls-cert", client_pem], ["--tls-key", client_key]):
                    bad = subprocess.run(mpctl + half + ["ls"],
                                         capture_output=True, text=True, timeout=30)
                    self.assertEqual(bad.returncode, 2, bad.stderr)
                    self.assertIn("key", bad.stderr)
                p = ProxyProcess(m.port, workers=1, flags=[
                    "--manager-tls-ca", server_pem, "--manager-tls-cert", client_pem,
                    "--manager-tls-key", client_key])
                try:
                    self.assertTrue(wait_for(
                        lambda: b'"a"' in p.request("GET", "/v1/models")[2], 20))
                    self.assertEqual(p.request("POST", "/v1/completions",
                                               {"model": "a", "max_tokens": 2})[0], 200)
                finally:
                    p.stop()
                missing = subprocess.run(
                    [runfile("proxy/modelproxy"), "--manager-tls-ca", d + "/nope.pem"],
                    capture_output=True, text=True, timeout=20)
                self.assertEqual(missing.returncode, 2)
                self.assertIn("nope.pem", missing.stderr)


class NoManagerYetTest(unittest.TestCase):
    def test_a_proxy_that_has_not_heard_from_the_manager_serves_nothing(self):
        # Fail closed: whether API keys are required is not known yet, so
        # nothing but /health is served (before, an empty key set meant an
        # open door until the first fetch succeeded).
        port = free_port()
        p = ProxyProcess(port, workers=1)
        try:
            self.assertEqual(p.request("GET", "/health")[0], 200)
            for method, path in [("GET", "/v1/models"), ("GET", "/metrics"),
                                 ("POST", "/unload")]:
                status, _, body = p.request(method, path, timeout=10)
                self.assertEqual(status, 503, (path, body))
                self.assertIn(b"API keys", body)
            # The manager (with keys) comes up on that port: the proxy
            # learns the keys and enforces them.
            m = ManagerProcess({"a": []}, extra_yaml="apiKeys: [sk-one]\n")  # Not started.
            manager = subprocess.Popen(
                [runfile("server/modelmanager"), "--config", m.config_path,
                 "--listen", "127.0.0.1:%d" % port], stderr=subprocess.DEVNULL)
            try:
                self.assertTrue(wait_for(lambda: p.request("GET", "/v1/models")[0] == 401, 20))
                status, _, body = p.request("GET", "/v1/models",
                                            headers={"Authorization": "Bearer sk-one"})
                self.assertEqual(status, 200, body)
            finally:
                manager.send_signal(signal.SIGTERM)
                self.assertEqual(manager.wait(30), 0)
                m.stop()
        finally:
            p.stop()


class UpstreamHostNameTest(unittest.TestCase):
    def test_upstream_host_names_are_resolved(self):
        # A name that never resolves (RFC 6761) fails the request with 502
        # naming it; the model itself is healthy (the manager probes by IP).
        with ManagerProcess({"bad": []},
                            proxies={"bad": "http://upstream.invalid:{port}"},
                            model_yaml={"bad": ["    checkEndpoint: none"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: b'"bad"' in p.request("GET", "/v1/models")[2], 10))
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "bad", "messages": []})
                self.assertEqual(status, 502, body)
                self.assertIn("cannot resolve the upstream host upstream.invalid",
                              json.loads(body)["error"]["message"])
            finally:
                p.stop()
        # A name that does resolve, where this machine's own name is a
        # loopback address (/etc/hosts): requests are served through it.
        name = socket.gethostname()
        try:
            addresses = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
        except OSError:
            addresses = set()
        if not addresses or not all(a.startswith("127.") for a in addresses):
            self.skipTest("%s does not resolve to loopback here" % name)
        with ManagerProcess({"named": []},
                            proxies={"named": "http://%s:{port}" % name}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: b'"named"' in p.request("GET", "/v1/models")[2], 10))
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "named", "messages": [],
                                             "max_tokens": 2})
                self.assertEqual(status, 200, body)
            finally:
                p.stop()


class ModelCrashTest(unittest.TestCase):
    def test_a_model_that_dies_under_steady_traffic_is_started_again(self):
        # The proxy's lease never idles out under steady traffic: only the
        # manager's REVOKED can make it ask again (which restarts the model).
        with ManagerProcess({"c": ["--crash-after-ms", "1500"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: b'"c"' in p.request("GET", "/v1/models")[2], 10))
                body = {"model": "c", "messages": [], "max_tokens": 2}
                self.assertEqual(p.request("POST", "/v1/chat/completions", body)[0], 200)
                first = m.model("c").pid
                statuses = []

                def served_by_a_new_process():
                    statuses.append(p.request("POST", "/v1/chat/completions", body)[0])
                    return statuses[-1] == 200 and m.model("c").pid not in (0, first)
                wait_for(served_by_a_new_process, 30, interval=0.05)
                model = m.model("c")
                self.assertEqual(statuses[-1], 200, statuses)
                self.assertNotIn(model.pid, (0, first), statuses)
                # Failures in between are clean errors, never a hang.
                self.assertTrue(set(statuses) <= {200, 502, 503}, statuses)
            finally:
                p.stop()


class UpstreamTimeoutTest(unittest.TestCase):
    def answers_twice(self, hole, timeouts, status, message):
        """A model `hole` at the listening socket `hole`, with `timeouts`:
        two requests (the first one's slot given back) each get `status`
        with `message`."""
        m = ManagerProcess({})
        with open(m.config_path, "w") as f:
            f.write("models:\n"
                    "  hole:\n"
                    "    cmd: sleep 600\n"
                    "    proxy: http://127.0.0.1:%d\n"
                    "    checkEndpoint: none\n"
                    "    concurrencyLimit: 1\n"
                    "    timeouts: %s\n" % (hole.getsockname()[1], timeouts))
        m.start()
        p = ProxyProcess(m.port, workers=1)
        try:
            self.assertTrue(wait_for(
                lambda: b'"hole"' in p.request("GET", "/v1/models")[2], 10))
            for _ in range(2):
                got, _, body = p.request("POST", "/v1/chat/completions",
                                         {"model": "hole", "messages": []})
                self.assertEqual(got, status, body)
                self.assertIn(message, json.loads(body)["error"]["message"])
        finally:
            p.stop()
            m.stop()

    def test_connect_timeout_answers_502_and_frees_the_lease(self):
        # An upstream whose accept queue is full: the kernel drops further
        # SYNs, so a connect neither succeeds nor fails until it times out.
        with socket.socket() as hole:
            hole.bind(("127.0.0.1", 0))
            hole.listen(0)
            with socket.create_connection(hole.getsockname(), timeout=5):
                self.answers_twice(hole, "{connect: 0.5}", 502, "timed out after 500ms")

    def test_response_header_timeout_answers_504_and_frees_the_lease(self):
        # An upstream that accepts and reads but never answers.
        with socket.socket() as hole:
            hole.bind(("127.0.0.1", 0))
            hole.listen(16)
            held = []
            threading.Thread(target=lambda: [held.append(hole.accept()) for _ in range(4)],
                             daemon=True).start()
            self.answers_twice(hole, "{responseHeader: 0.5}", 504, "responseHeader")


class LoadingCommentsTest(unittest.TestCase):
    def test_a_streaming_request_hears_the_model_loading_then_gets_its_stream(self):
        with ManagerProcess({"late": ["--ready-after-ms", "1500", "--tokens", "4"],
                             "broken": ["--ready-after-ms", "100000",
                                        "--crash-after-ms", "1200"],
                             "quick": ["--tokens", "2"]}) as m:
            p = ProxyProcess(m.port, workers=1, flags=["--loading-interval-ms", "200"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10))
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
                conn.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "late", "stream": True, "messages": []}))
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
                body = r.read()
                comments = re.findall(rb"^: loading late (\d+\.\d)s, queue position 1$",
                                      body, re.M)
                self.assertGreaterEqual(len(comments), 3, body)
                self.assertEqual(sse_text(body), "tok0 tok1 tok2 tok3 ")
                self.assertTrue(body.endswith(b"data: [DONE]\n\n"), body)
                # The same connection serves the next request normally.
                conn.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "late", "stream": True, "messages": []}))
                r = conn.getresponse()
                body = r.read()
                self.assertNotIn(b": loading", body)
                self.assertEqual(sse_text(body), "tok0 tok1 tok2 tok3 ")
                conn.close()
                # A start that fails after the head went out: an SSE error event.
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "broken", "stream": True,
                                                   "messages": []})
                self.assertEqual(status, 200)
                self.assertIn(b": loading broken", body)
                events = body.split(b"\n\n")
                self.assertEqual(events[-2], b"data: [DONE]", body)
                event = events[-3]
                self.assertTrue(event.startswith(b"data: {"), body)
                error = json.loads(event[6:])["error"]
                self.assertEqual(error["code"], 503)
                # Not streaming, or no wait: no comments.
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "quick", "messages": []})
                self.assertEqual((status, headers["Content-Type"]), (200, "application/json"))
                self.assertNotIn(b": loading", body)
                # Not streaming and waiting for a start (late again, which
                # takes 1.5 s): a plain JSON answer, no comments before it.
                m.stub().Stop(pb.StopRequest(model="late", force=True), timeout=20)
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "late", "messages": []})
                self.assertEqual((status, headers["Content-Type"]), (200, "application/json"))
                self.assertEqual(json.loads(body)["object"], "chat.completion")
            finally:
                p.stop()


class SwapUnderStreamsTest(unittest.TestCase):
    def test_a_swap_lets_the_streams_in_flight_finish_and_serves_the_waiting_after(self):
        # One swap group (the default): b needs a stopped. a's streams run
        # for seconds; b is asked for while they are all mid-stream and may
        # not wait (maxQueueWait 0), so the manager revokes the proxy's lease
        # on a under them.
        tokens = 80
        with ManagerProcess({"a": ["--tokens", str(tokens), "--tokens-per-second", "20"],
                             "b": ["--tokens", "3"]},
                            model_yaml={"b": ["    maxQueueWait: 0"]}) as m:
            p = ProxyProcess(m.port, workers=2)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                b_sent = threading.Event()
                streaming = []
                results = {}

                def stream_a(i):
                    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
                    conn.request("POST", "/v1/chat/completions", json.dumps(
                        {"model": "a", "stream": True, "messages": []}))
                    r = conn.getresponse()
                    first = r.read1(65536)  # The first event is under way.
                    streaming.append(i)
                    body = first + r.read()
                    # Still streaming when b was asked for: the revocation
                    # came while this stream was in flight.
                    results["a%d" % i] = (r.status, body, b_sent.is_set())
                    conn.close()

                a_threads = [threading.Thread(target=stream_a, args=(i,)) for i in range(4)]
                for t in a_threads:
                    t.start()
                self.assertTrue(wait_for(lambda: len(streaming) == 4, 30))
                a_pid = m.model("a").pid

                def ask(name, model):
                    results[name] = p.request("POST", "/v1/chat/completions",
                                              {"model": model, "stream": True,
                                               "messages": []}, timeout=60)

                b_threads = [threading.Thread(target=ask, args=("b%d" % i, "b"))
                             for i in range(2)]
                for t in b_threads:
                    t.start()
                # Once b is asked for (the proxy's lease on a is revoked), a
                # new request for a waits for a's next lease.
                self.assertTrue(wait_for(
                    lambda: m.model("b").queued_requests > 0
                    or m.model("b").state != pb.MODEL_STATE_STOPPED, 30))
                b_sent.set()
                late_a = threading.Thread(target=ask, args=("late_a", "a"))
                late_a.start()
                for t in a_threads + b_threads + [late_a]:
                    t.join(120)
                want_a = "".join("tok%d " % i for i in range(tokens))
                for i in range(4):
                    status, body, during_swap = results["a%d" % i]
                    self.assertEqual(status, 200)
                    self.assertEqual(sse_text(body), want_a)
                    self.assertTrue(body.endswith(b"data: [DONE]\n\n"), body[-200:])
                    self.assertTrue(during_swap, "stream %d ended before b was asked for" % i)
                for name in ("b0", "b1"):
                    status, _, body = results[name]
                    self.assertNotIn(b'"error"', body)
                    self.assertEqual((status, sse_text(body)), (200, "tok0 tok1 tok2 "))
                status, _, body = results["late_a"]
                self.assertEqual((status, sse_text(body)), (200, want_a))
                # a was stopped for b and started again for the late request.
                self.assertNotEqual(m.model("a").pid, a_pid)
            finally:
                p.stop()


class ReloadTest(unittest.TestCase):
    def test_a_reload_reaches_the_routes_without_a_proxy_restart(self):
        with ManagerProcess({"a": [], "b": []}) as m:
            p = ProxyProcess(m.port, workers=2)
            try:
                def ids():
                    status, _, body = p.request("GET", "/v1/models")
                    return [e["id"] for e in json.loads(body)["data"]] if status == 200 else []

                def chat(model):
                    return p.request("POST", "/v1/chat/completions",
                                     {"model": model, "messages": []})[0]

                self.assertTrue(wait_for(lambda: ids() == ["a", "b"], 10), ids())
                self.assertEqual(chat("b"), 200)
                self.assertEqual(chat("c"), 404)
                # b removed, c added; a gains an alias and a useModelName.
                m.write_config(models={"a": [], "c": []},
                               model_yaml={"a": ["    aliases: [fast]",
                                                 "    useModelName: renamed"]})
                m.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: ids() == ["a", "c"], 15), ids())
                self.assertEqual(chat("b"), 404)
                self.assertEqual(chat("c"), 200)
                self.assertEqual(chat("fast"), 200)
                self.assertEqual(upstream_stats(m.ports["a"])["last_model"], "renamed")
            finally:
                p.stop()

    def test_the_lease_is_given_back_when_idle_so_the_ttl_unloads_the_model(self):
        with ManagerProcess({"a": []}, model_yaml={"a": ["    ttl: 1"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                status, _, _ = p.request("POST", "/v1/chat/completions",
                                         {"model": "a", "messages": []})
                self.assertEqual(status, 200)
                self.assertEqual(m.model("a").state, pb.MODEL_STATE_READY)
                # The proxy releases after its linger with the last-use time;
                # the manager's TTL then stops the model (the proxy is still
                # up: a lease it kept would keep the model forever).
                self.assertTrue(wait_for(
                    lambda: m.model("a").state == pb.MODEL_STATE_STOPPED, 20),
                    m.model("a"))
                # And the next request starts it again.
                status, _, _ = p.request("POST", "/v1/chat/completions",
                                         {"model": "a", "messages": []})
                self.assertEqual(status, 200)
            finally:
                p.stop()


class UpstreamPathTest(unittest.TestCase):
    def test_ids_with_slashes_and_escapes_pass_through_upstream_paths(self):
        with ManagerProcess({"org/m": []}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: b'"org/m"' in p.request("GET", "/v1/models")[2], 10))
                status, _, body = p.request("GET", "/upstream/org/m/v1/models")
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body)["data"][0]["id"], "org/m")
                # The prefix goes; the rest reaches the model byte for byte
                # (an escaped slash stays escaped).
                status, _, _ = p.request("GET", "/upstream/org/m/files/a%2Fb%20c?x=%41")
                stats = upstream_stats(m.ports["org/m"])
                self.assertEqual((stats["last_path"], stats["last_query"]),
                                 ("/files/a%2Fb%20c", "x=%41"))
                # JSON routing finds it too.
                status, _, _ = p.request("POST", "/v1/chat/completions",
                                         {"model": "org/m", "messages": []})
                self.assertEqual(status, 200)
            finally:
                p.stop()


class StartFailureTest(unittest.TestCase):
    def test_a_start_timeout_is_504_and_a_failed_start_503_with_its_reason(self):
        with ManagerProcess({"stuck": ["--ready-after-ms", "100000"],
                             "dies": ["--exit-immediately", "3"]},
                            model_yaml={"stuck": ["    healthCheckTimeout: 1"]}) as m:
            p = ProxyProcess(m.port, workers=1)
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "stuck", "messages": []})
                self.assertEqual(status, 504, body)
                error = json.loads(body)["error"]
                self.assertEqual(error["code"], 504)
                self.assertIn("not ready within healthCheckTimeout", error["message"])
                # The same model streaming: the error comes as an SSE event
                # once the loading comments have opened the response, else
                # as a plain 504.
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "stuck", "stream": True,
                                                   "messages": []})
                if status == 200:
                    event = body.split(b"\n\n")[-3]
                    self.assertTrue(event.startswith(b"data: {"), body)
                    error = json.loads(event[6:])["error"]
                else:
                    self.assertEqual(status, 504, body)
                    error = json.loads(body)["error"]
                self.assertEqual(error["code"], 504)
                self.assertIn("healthCheckTimeout", error["message"])
                # A process that exits during its start: 503, with why.
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": "dies", "messages": []})
                self.assertEqual(status, 503, body)
                error = json.loads(body)["error"]
                self.assertEqual(error["code"], 503)
                self.assertIn("exited before it was ready", error["message"])
                self.assertIn("(exit code 3)", error["message"])
            finally:
                p.stop()


class SendLoadingStateTest(unittest.TestCase):
    def test_a_waiting_chat_stream_gets_reasoning_content_deltas_then_the_model(self):
        # llama-swap's sendLoadingState (global here, off again for one model).
        with ManagerProcess({"late": ["--ready-after-ms", "1500", "--tokens", "4"],
                             "later": ["--ready-after-ms", "1500", "--tokens", "1"],
                             "plain": ["--ready-after-ms", "800", "--tokens", "2"]},
                            model_yaml={"plain": ["    sendLoadingState: false"]},
                            extra_yaml="sendLoadingState: true\n") as m:
            p = ProxyProcess(m.port, workers=1, flags=["--loading-interval-ms", "200"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10))
                status, headers, body = p.request(
                    "POST", "/v1/chat/completions",
                    {"model": "late", "stream": True, "messages": []})
                self.assertEqual((status, headers["Content-Type"]),
                                 (200, "text/event-stream"))
                self.assertNotIn(b": loading", body)
                reasoning = ""
                for event in body.split(b"\n\n"):
                    if not event.startswith(b"data: {"):
                        continue
                    chunk = json.loads(event[6:])
                    if chunk["id"] != "modelplane-loading":
                        continue
                    self.assertEqual((chunk["object"], chunk["model"]),
                                     ("chat.completion.chunk", "late"))
                    reasoning += chunk["choices"][0]["delta"]["reasoning_content"]
                self.assertRegex(reasoning, r"^Loading late\.\.\.( \(queue position 1\))?"
                                            r"\.\.+ done \(\d+\.\ds\)\n\n$")
                self.assertEqual(sse_text(body), "tok0 tok1 tok2 tok3 ")
                self.assertTrue(body.endswith(b"data: [DONE]\n\n"), body)
                # A model that turned it off gets the comments instead.
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "plain", "stream": True,
                                             "messages": []})
                self.assertIn(b": loading plain", body)
                self.assertNotIn(b"reasoning_content", body)
            finally:
                p.stop()
            # Comments off (--loading-interval-ms 0): the loading state is
            # the config's choice and still runs, at llama-swap's pace.
            p = ProxyProcess(m.port, workers=1, flags=["--loading-interval-ms", "0"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 3, 10))
                status, _, body = p.request("POST", "/v1/chat/completions",
                                            {"model": "later", "stream": True,
                                             "messages": []})
                self.assertEqual(status, 200)
                self.assertIn(b'"reasoning_content":"Loading later...', body)
                self.assertRegex(body, rb'"reasoning_content":" done \(\d+\.\ds\)\\n\\n"')
                self.assertNotIn(b": loading", body)
                self.assertEqual(sse_text(body), "tok0 ")
            finally:
                p.stop()


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset of label pairs): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, "malformed metrics line: %r" % line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(metrics, name, **labels):
    """The sum of `name`'s series that carry `labels` (others may differ:
    the node a request went to, say); None when there is none."""
    want = set(labels.items())
    found = [v for (n, ls), v in metrics.items() if n == name and want <= ls]
    return sum(found) if found else None


class MetricsTest(unittest.TestCase):
    def test_metrics_count_requests_across_workers_and_the_access_log(self):
        with ManagerProcess({"m": ["--tokens", "3"],
                             "slow": ["--tokens", "100", "--tokens-per-second", "50"]},
                            model_yaml={"slow": ["    concurrencyLimit: 1"]},
                            extra_yaml="groups:\n  g: {members: [slow], exclusive: false}\n") as mg:
            p = ProxyProcess(mg.port, workers=2, flags=["--access-log"])
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 2, 10))
                body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}]}
                # Separate connections: the kernel spreads them over both workers.
                # The usage the model reports, summed (modelproxy_tokens_total).
                prompt = completion = 0
                for i in range(6):
                    status, _, out = p.request("POST", "/v1/chat/completions",
                                               dict(body, stream=i == 5))
                    self.assertEqual(status, 200)
                    events = [json.loads(e[6:]) for e in out.decode().split("\n\n")
                              if e.startswith("data: {")] if i == 5 else [json.loads(out)]
                    usage = [e["usage"] for e in events if e.get("usage")][-1]
                    prompt += usage["prompt_tokens"]
                    completion += usage["completion_tokens"]
                self.assertGreater(prompt, 0)
                self.assertEqual(p.request("POST", "/v1/chat/completions",
                                           {"model": "nope"})[0], 404)
                self.assertEqual(p.request("GET", "/health")[0], 200)
                # A held stream on a concurrencyLimit 1 model: the next gets 429.
                s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
                raw = json.dumps({"model": "slow", "stream": True, "messages": []}).encode()
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
                got = b""
                while b"tok0" not in got:
                    got += s.recv(4096)
                self.assertEqual(p.request("POST", "/v1/chat/completions",
                                           {"model": "slow", "messages": []})[0], 429)
                status, headers, text = p.request("GET", "/metrics")
                self.assertEqual(status, 200)
                self.assertTrue(headers["Content-Type"].startswith("text/plain"))
                got_metrics = parse_metrics(text.decode())
                s.close()

                def req(model, route, code):
                    return metric(got_metrics, "modelproxy_requests_total",
                                  model=model, route=route, status=str(code))
                self.assertEqual(req("m", "/v1/chat/completions", 200), 6)
                self.assertEqual(req("", "/v1/chat/completions", 404), 1)
                self.assertEqual(req("", "/health", 200), 1)
                self.assertEqual(req("slow", "/v1/chat/completions", 429), 1)
                self.assertEqual(metric(got_metrics, "modelproxy_lease_errors_total",
                                        model="slow", code="RESOURCE_EXHAUSTED"), 1)
                self.assertEqual(metric(got_metrics,
                                        "modelproxy_upstream_time_to_first_byte_seconds_count",
                                        model="m"), 6)
                self.assertEqual(metric(got_metrics,
                                        "modelproxy_upstream_time_to_first_byte_seconds_bucket",
                                        model="m", le="+Inf"), 6)
                self.assertEqual(metric(got_metrics, "modelproxy_lease_wait_seconds_count",
                                        model="m"), 6)
                self.assertEqual(metric(got_metrics, "modelproxy_tokens_total",
                                        model="m", type="prompt"), prompt)
                self.assertEqual(metric(got_metrics, "modelproxy_tokens_total",
                                        model="m", type="completion"), completion)
                # The stream still holds its lease; m's requests are all done.
                self.assertEqual(metric(got_metrics, "modelproxy_in_flight", model="slow"), 1)
                self.assertEqual(metric(got_metrics, "modelproxy_in_flight", model="m"), 0)
                self.assertGreaterEqual(metric(got_metrics, "modelproxy_open_connections"), 1)
                self.assertGreater(metric(got_metrics, "modelproxy_bytes_sent_total"), 0)
                self.assertGreater(metric(got_metrics, "modelproxy_bytes_received_total"), 0)
                # The whole exposition, through a real Prometheus parser
                # (Debian's python3-prometheus-client): OpenTelemetry's GenAI
                # histograms with their boundaries, vLLM's queue gauges.
                from prometheus_client.parser import text_string_to_metric_families
                families = {f.name: f for f in
                            text_string_to_metric_families(text.decode())}
                self.assertIn("modelproxy_requests", families)

                def samples(family, suffix, **labels):
                    return [smp for smp in families[family].samples
                            if smp.name == family + suffix
                            and all(smp.labels.get(k) == v for k, v in labels.items())]
                duration = "gen_ai_server_request_duration_seconds"
                self.assertEqual(families[duration].type, "histogram")
                self.assertEqual(sum(x.value for x in samples(
                    duration, "_count", gen_ai_request_model="m")), 6)
                self.assertEqual(
                    [x.labels["le"] for x in samples(duration, "_bucket",
                                                     gen_ai_request_model="m")][:3],
                    ["0.01", "0.02", "0.04"])
                ttft = "gen_ai_server_time_to_first_token_seconds"
                self.assertEqual(sum(x.value for x in samples(
                    ttft, "_count", gen_ai_request_model="m")), 1)  # One stream.
                self.assertEqual(samples(ttft, "_bucket", gen_ai_request_model="m")[0]
                                 .labels["le"], "0.001")
                tpot = "gen_ai_server_time_per_output_token_seconds"
                self.assertEqual(sum(x.value for x in samples(
                    tpot, "_count", gen_ai_request_model="m")), 1)
                usage = "gen_ai_client_token_usage"
                self.assertEqual(sum(x.value for x in samples(
                    usage, "_sum", gen_ai_request_model="m", gen_ai_token_type="input")),
                    prompt)
                self.assertEqual(sum(x.value for x in samples(
                    usage, "_sum", gen_ai_request_model="m", gen_ai_token_type="output")),
                    completion)
                running = [x for x in families["vllm:num_requests_running"].samples
                           if x.labels == {"model_name": "slow"}]
                self.assertEqual([x.value for x in running], [1])
                self.assertIn("vllm:num_requests_waiting", families)
                # The activity log: m's six requests, newest first, paged.
                status, _, body = p.request("GET", "/api/metrics/activity?model=m&limit=4")
                self.assertEqual(status, 200, body)
                page = json.loads(body)
                self.assertEqual(len(page["activity"]), 4)
                ids = [e["id"] for e in page["activity"]]
                self.assertEqual(ids, sorted(ids, reverse=True))
                self.assertTrue(all(e["model"] == "m" and e["status"] == 200
                                    and e["path"] == "/v1/chat/completions"
                                    for e in page["activity"]), page)
                status, _, body = p.request(
                    "GET", "/api/metrics/activity?model=m&before=%d" % page["next_before"])
                rest = json.loads(body)["activity"]
                self.assertEqual(len(rest), 2)
                self.assertEqual(sum(e["output_tokens"] for e in page["activity"] + rest),
                                 completion)
                self.assertTrue(any(e["time_to_first_token_ms"] is not None
                                    for e in page["activity"] + rest))  # The stream.
                self.assertEqual(p.request("GET", "/api/metrics/activity?limit=0")[0], 400)
                # The stream the client dropped mid-response is counted too.
                self.assertTrue(wait_for(lambda: metric(parse_metrics(
                    p.request("GET", "/metrics")[2].decode()), "modelproxy_requests_total",
                    model="slow", route="/v1/chat/completions", status="200") == 1, 10))
            finally:
                p.stop()
            log = "\n".join(p.log())
            lines = [l for l in p.log() if '"POST /v1/chat/completions"' in l]
            self.assertEqual(sum(" 200 " in l and "model=m" in l for l in lines), 6, log)
            self.assertEqual(sum(" 404 " in l and "model=-" in l for l in lines), 1, log)
            self.assertEqual(sum(" 429 " in l and "model=slow" in l for l in lines), 1, log)


class PeersTest(unittest.TestCase):
    def test_a_peers_base_path_is_where_its_requests_go(self):
        # The peer is another modelproxy's /upstream/<model>: requests go
        # under the peer URL's path, as llama-swap forwards them.
        with ManagerProcess({"chat": ["--tokens", "3"]}) as far:
            far_proxy = ProxyProcess(far.port, workers=1)
            try:
                peers = ("peers:\n  far:\n    proxy: http://127.0.0.1:%d/upstream/chat/\n"
                         "    models: [chat]\n" % far_proxy.port)
                with ManagerProcess({"local": []}, extra_yaml=peers) as near:
                    p = ProxyProcess(near.port, workers=1)
                    try:
                        self.assertTrue(wait_for(lambda: b"far/chat" in p.request(
                            "GET", "/v1/models")[2], 10))
                        status, _, body = p.request("POST", "/v1/chat/completions",
                                                    {"model": "far/chat", "messages": []})
                        self.assertEqual(status, 200, body)
                        self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 3)
                        # It went through the far proxy's /upstream/chat/...
                        self.assertEqual(far.model("chat").state, pb.MODEL_STATE_READY)
                        status, _, body = far_proxy.request("GET", "/api/metrics/activity")
                        paths = [e["path"] for e in json.loads(body)["activity"]]
                        self.assertEqual(paths, ["/upstream/chat/v1/chat/completions"])
                    finally:
                        p.stop()
            finally:
                far_proxy.stop()

    def test_peer_models_are_forwarded_with_the_peer_key_and_no_lease(self):
        # A peer is any OpenAI-compatible server (here a fake_upstream)
        # whose models the proxy forwards to as they are.
        from tools.testing.fake_upstream_proc import FakeUpstream
        with FakeUpstream("--tokens", "2") as remote, \
                FakeUpstream("--tokens", "2") as other:
            dead = free_port()
            peers = ("peers:\n"
                     "  remote:\n"
                     "    proxy: http://127.0.0.1:%d\n"
                     "    apiKey: peer-secret\n"
                     "    models: [big-model, shared]\n"
                     "    filters: {setParams: {temperature: 0.5}}\n"
                     "  other:\n"
                     "    proxy: http://127.0.0.1:%d\n"
                     "    models: [shared, local]\n"
                     "  down:\n"
                     "    proxy: http://127.0.0.1:%d\n"
                     "    models: [gone]\n" % (remote.port, other.port, dead))
            with ManagerProcess({"local": ["--tokens", "1"]}, extra_yaml=peers) as mg:
                p = ProxyProcess(mg.port, workers=1)
                try:
                    self.assertTrue(wait_for(lambda: b"remote/big-model" in p.request(
                        "GET", "/v1/models")[2], 10))
                    ids = [m["id"] for m in json.loads(p.request("GET", "/v1/models")[2])["data"]]
                    self.assertEqual(ids, ["down/gone", "local", "other/local", "other/shared",
                                           "remote/big-model", "remote/shared"])
                    body = {"model": "remote/big-model", "messages": []}
                    status, _, _ = p.request("POST", "/v1/chat/completions", body,
                                             {"Authorization": "Bearer client-key"})
                    self.assertEqual(status, 200)
                    last = json.loads(remote.request("GET", "/stats")[2])
                    # The peer's name for it, the peer's filters, the peer's key.
                    sent = json.loads(last["last_body"])
                    self.assertEqual((sent["model"], sent["temperature"]), ("big-model", 0.5))
                    self.assertEqual(last["last_headers"]["authorization"], "Bearer peer-secret")
                    self.assertEqual(last["last_headers"]["x-api-key"], "peer-secret")
                    # A bare name one peer has; one two have needs <peer>/.
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               dict(body, model="big-model"))[0], 200)
                    self.assertEqual(json.loads(json.loads(remote.request(
                        "GET", "/stats")[2])["last_body"])["model"], "big-model")
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               dict(body, model="shared"))[0], 404)
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               dict(body, model="other/shared"),
                                               {"Authorization": "Bearer client-key"})[0], 200)
                    # No key for that peer: the client's header goes as sent.
                    self.assertEqual(json.loads(other.request("GET", "/stats")[2])[
                        "last_headers"]["authorization"], "Bearer client-key")
                    # A local model comes before a peer's of the same name.
                    self.assertEqual(p.request("POST", "/v1/chat/completions",
                                               dict(body, model="local"))[0], 200)
                    self.assertEqual(mg.model("local").state, pb.MODEL_STATE_READY)
                    # The raw passthrough reaches a peer's model too.
                    status, _, _ = p.request("GET", "/upstream/remote/big-model/v1/models")
                    self.assertEqual(status, 200)
                    last = json.loads(remote.request("GET", "/stats")[2])
                    self.assertEqual(last["last_path"], "/v1/models")
                    # A form (or ?model=) names the model as the peer knows it.
                    status, _, _ = p.request(
                        "POST", "/v1/audio/speech", "input=hi&model=remote%2Fbig-model",
                        {"Content-Type": "application/x-www-form-urlencoded"})
                    self.assertEqual(json.loads(remote.request("GET", "/stats")[2])[
                        "last_body"], "input=hi&model=big-model")
                    # A peer that is down: 502, nothing else touched.
                    status, _, body_out = p.request("POST", "/v1/chat/completions",
                                                    dict(body, model="down/gone"))
                    self.assertEqual(status, 502, body_out)
                    # Peers are no models of the manager's; ListModels carries
                    # them (with their keys) for data planes.
                    listed = mg.stub().ListModels(pb.ListModelsRequest(), timeout=10)
                    self.assertEqual([m.id for m in listed.models], ["local"])
                    self.assertEqual([x.id for x in listed.peers], ["down", "other", "remote"])
                    self.assertEqual(listed.peers[2].api_key, "peer-secret")
                finally:
                    p.stop()


class SelectorsTest(unittest.TestCase):
    def test_selectors_pick_a_target_by_strategy(self):
        yaml = ("groups:\n  pair: {members: [a1, a2], swap: false}\n"
                "selectors:\n"
                "  pinned: {strategy: pin, targets: [a2, a1]}\n"
                "  warm: {strategy: warm, targets: [a1, a2], name: Warm one}\n"
                "  spill: {strategy: spillover, targets: [a1, a2],"
                " settings: {spillover: 1}}\n"
                "  hidden: {targets: [a1], unlisted: true}\n")
        with ManagerProcess({"a1": ["--tokens", "40", "--tokens-per-second", "20"],
                             "a2": ["--tokens", "2"]}, extra_yaml=yaml) as mg:
            p = ProxyProcess(mg.port, workers=1)

            def served_by(model, stream=False):
                status, headers, _ = p.request("POST", "/v1/chat/completions",
                                               {"model": model, "messages": [],
                                                "max_tokens": 1, "stream": stream})
                self.assertEqual(status, 200)
                return headers["X-Fake-Upstream-Model"]
            try:
                self.assertTrue(wait_for(lambda: b'"spill"' in p.request(
                    "GET", "/v1/models")[2], 10))
                listed = json.loads(p.request("GET", "/v1/models")[2])["data"]
                self.assertEqual([m["id"] for m in listed],
                                 ["a1", "a2", "pinned", "spill", "warm"])
                self.assertEqual(listed[4]["name"], "Warm one")
                # pin: the first target; the body names the target.
                self.assertEqual(served_by("pinned"), "a2")
                self.assertEqual(json.loads(upstream_stats(mg.ports["a2"])["last_body"])["model"],
                                 "a2")
                # warm: a2 is up, a1 is not: a2, though a1 comes first.
                self.assertEqual(mg.model("a1").state, pb.MODEL_STATE_STOPPED)
                self.assertEqual(served_by("warm"), "a2")
                # Once a1 is up too, the first.
                self.assertEqual(served_by("a1"), "a1")
                self.assertTrue(wait_for(lambda: b'"a1"' in p.request("GET", "/running")[2], 10))
                self.assertEqual(served_by("warm"), "a1")
                # spillover: a1 while it has fewer than 1 request; a long
                # stream on it sends the next to a2.
                self.assertEqual(served_by("spill"), "a1")
                s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
                raw = json.dumps({"model": "spill", "stream": True, "messages": []}).encode()
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
                got = b""
                while b"tok0" not in got:
                    got += s.recv(4096)
                self.assertIn(b"X-Fake-Upstream-Model: a1", got)
                self.assertEqual(served_by("spill"), "a2")
                s.close()
                self.assertTrue(wait_for(lambda: served_by("spill") == "a1", 10))
                # /upstream/<selector>/... goes to the target, path kept.
                self.assertEqual(p.request("GET", "/upstream/pinned/v1/models")[0], 200)
                self.assertEqual(upstream_stats(mg.ports["a2"])["last_path"], "/v1/models")
                # A selector is no model of the manager's.
                self.assertEqual(p.request("POST", "/unload?model=spill")[0], 404)
            finally:
                p.stop()


class ProfilesTest(unittest.TestCase):
    def test_the_active_profile_rewrites_and_disables_names(self):
        yaml = ("profiles:\n"
                "  coding:\n"
                "    description: Coder everywhere\n"
                "    pins: {gpt-4o: coder, chat: null, coder: chat}\n"
                "  plain: {pins: {gpt-3: chat}}\n")
        with ManagerProcess({"chat": ["--tokens", "1"], "coder": ["--tokens", "1"]},
                            extra_yaml=yaml) as mg:
            p = ProxyProcess(mg.port, workers=2)

            def served_by(model):
                status, headers, body = p.request("POST", "/v1/chat/completions",
                                                  {"model": model, "messages": []})
                return status if status != 200 else headers["X-Fake-Upstream-Model"]

            def put(body):
                return p.request("PUT", "/api/profiles/active", body)
            try:
                self.assertTrue(wait_for(lambda: b'"coding"' in p.request(
                    "GET", "/api/profiles")[2], 10))
                got = json.loads(p.request("GET", "/api/profiles")[2])
                self.assertIsNone(got["active"])
                self.assertEqual(got["profiles"][0], {
                    "name": "coding", "description": "Coder everywhere",
                    "pins": {"chat": None, "coder": "chat", "gpt-4o": "coder"}})
                # None active: names mean what they say.
                self.assertEqual(served_by("gpt-4o"), 404)
                self.assertEqual(served_by("chat"), "chat")
                status, _, body = put({"name": "coding"})
                self.assertEqual((status, json.loads(body)["active"]), (200, "coding"))
                # Pinned once (coder -> chat, but gpt-4o -> coder stays coder);
                # a null pin disables the name.
                for _ in range(2):  # Whichever worker answers.
                    self.assertEqual(served_by("gpt-4o"), "coder")
                    self.assertEqual(served_by("coder"), "chat")
                    self.assertEqual(served_by("chat"), 404)
                # The upstream hears the model it serves, not the pinned name.
                self.assertEqual(served_by("gpt-4o"), "coder")
                self.assertEqual(json.loads(upstream_stats(mg.ports["coder"])[
                    "last_body"])["model"], "coder")
                # /upstream/<pinned name>/... keeps its path.
                self.assertEqual(p.request("GET", "/upstream/gpt-4o/v1/models")[0], 200)
                self.assertEqual(upstream_stats(mg.ports["coder"])["last_path"], "/v1/models")
                ids = [m["id"] for m in json.loads(p.request("GET", "/v1/models")[2])["data"]]
                self.assertEqual(ids, ["coder", "gpt-4o"])
                self.assertEqual(put({"name": "nope"})[0], 404)
                self.assertEqual(put("{bad")[0], 400)
                self.assertEqual(put({"name": None})[0], 200)
                self.assertEqual(served_by("chat"), "chat")
                self.assertEqual(served_by("gpt-4o"), 404)
            finally:
                p.stop()


class WorkerBalanceTest(unittest.TestCase):
    def test_connections_are_spread_evenly_over_the_workers(self):
        # SO_REUSEPORT alone hashes connections over the workers (64 land
        # 36/28 as often as not); the accepting worker hands a connection to
        # the one holding the fewest. Half of these are handed over, and
        # each is served on the worker it ended on.
        with ManagerProcess({"m": ["--tokens", "2"]}) as mg:
            p = ProxyProcess(mg.port, workers=2)
            conns = []
            try:
                self.assertTrue(wait_for(
                    lambda: p.request("GET", "/v1/models")[2].count(b'"id"') == 1, 10))
                body = json.dumps({"model": "m", "messages": []})
                for _ in range(100):
                    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
                    c.request("POST", "/v1/chat/completions", body,
                              {"Content-Type": "application/json"})
                    r = c.getresponse()
                    self.assertEqual(r.status, 200)
                    self.assertIn(b"tok1", r.read())
                    conns.append(c)
                # A second request on each: they stay where they are.
                for c in conns:
                    c.request("POST", "/v1/chat/completions", body,
                              {"Content-Type": "application/json"})
                    r = c.getresponse()
                    self.assertEqual(r.status, 200)
                    r.read()
                got = parse_metrics(p.request("GET", "/metrics")[2].decode())
                w0 = metric(got, "modelproxy_worker_connections", worker="0")
                w1 = metric(got, "modelproxy_worker_connections", worker="1")
                # The 100 and the one asking for /metrics.
                self.assertEqual(w0 + w1, 101, got)
                self.assertLessEqual(abs(w0 - w1), 1, (w0, w1))
            finally:
                for c in conns:
                    c.close()
                p.stop()


if __name__ == "__main__":
    junit.main()
