"""fake_upstream over real sockets: endpoints, HTTP/1.1 details, the
disconnect counter and each startup mode."""

import json
import os
import resource
import signal
import socket
import subprocess
import time
import unittest

from tools.testing import junit
from tools.testing.fake_upstream_proc import FakeUpstream, runfile, wait_for


def raw_exchange(port, data, want_responses=1, timeout=10.0):
    """Sends raw bytes and reads until `want_responses` complete responses
    (Content-Length framed) arrived or the peer closed. Returns the bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while count_responses(buf) < want_responses:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


def count_responses(buf):
    n, pos = 0, 0
    while True:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return n
        head = buf[pos:end].decode()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(buf) < end + 4 + length:
            return n
        n, pos = n + 1, end + 4 + length


def sse_events(body):
    return [e[len("data: "):] for e in body.decode().split("\n\n") if e]


class EndpointTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream("--model", "fake-a", "--tokens", "4",
                              env=dict(os.environ, FAKE_MARKER="marker-value"))
        cls.up.start()

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()

    def test_health_is_ok_when_ready_at_once(self):
        status, _, body = self.up.request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_chat_completion_non_streaming(self):
        status, headers, body = self.up.request(
            "POST", "/v1/chat/completions",
            {"model": "asked", "messages": [{"role": "user", "content": "a b c"}]})
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Fake-Upstream-Model"], "fake-a")
        doc = json.loads(body)
        self.assertEqual(doc["object"], "chat.completion")
        self.assertEqual(doc["model"], "asked")
        self.assertEqual(doc["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 ")
        self.assertEqual(doc["choices"][0]["finish_reason"], "stop")
        self.assertEqual(doc["usage"], {"prompt_tokens": 4, "completion_tokens": 4,
                                        "total_tokens": 8})

    def test_completion_honours_max_tokens(self):
        status, _, body = self.up.request(
            "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual(doc["object"], "text_completion")
        self.assertEqual(doc["model"], "fake-a")
        self.assertEqual(doc["choices"][0]["text"], "tok0 tok1 ")
        self.assertEqual(doc["choices"][0]["finish_reason"], "length")

    def test_chat_completion_streams_sse(self):
        status, headers, body = self.up.request(
            "POST", "/v1/chat/completions",
            {"model": "m", "stream": True, "messages": []})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/event-stream")
        self.assertEqual(headers["Transfer-Encoding"], "chunked")
        events = sse_events(body)
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        self.assertEqual(text, "tok0 tok1 tok2 tok3 ")
        final = chunks[-1]
        self.assertEqual(final["choices"][0]["finish_reason"], "stop")
        self.assertEqual(final["usage"]["completion_tokens"], 4)
        self.assertEqual(final["timings"]["predicted_n"], 4)
        self.assertTrue(all(c["object"] == "chat.completion.chunk" for c in chunks))

    def test_embeddings_one_vector_per_input(self):
        status, _, body = self.up.request(
            "POST", "/v1/embeddings", {"model": "emb", "input": ["a", "b c", "d"]})
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual(len(doc["data"]), 3)
        self.assertEqual(len(doc["data"][2]["embedding"]), 8)
        self.assertEqual(doc["usage"]["prompt_tokens"], 4)
        import base64
        import struct
        status, _, body = self.up.request(
            "POST", "/v1/embeddings", {"input": "a", "encoding_format": "base64"})
        raw = base64.b64decode(json.loads(body)["data"][0]["embedding"])
        self.assertEqual(struct.unpack("<8f", raw), tuple(0.125 * (d + 1) for d in range(8)))

    def test_transcription_echoes_model_and_file_size(self):
        boundary = "XyZ"
        payload = b"\x00\x01" * 5000
        body = (("--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
                 "whisper-1\r\n--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                 "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
                % (boundary, boundary)).encode() + payload + (
                    "\r\n--%s--\r\n" % boundary).encode()
        status, _, resp = self.up.request(
            "POST", "/v1/audio/transcriptions", body,
            {"Content-Type": "multipart/form-data; boundary=" + boundary})
        self.assertEqual(status, 200)
        doc = json.loads(resp)
        self.assertEqual(doc["model"], "whisper-1")
        self.assertEqual(doc["file_bytes"], 10000)
        self.assertEqual(doc["file_name"], "a.wav")
        self.assertEqual(self.up.stats()["last_model"], "whisper-1")

    def test_models_and_env(self):
        status, _, body = self.up.request("GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"][0]["id"], "fake-a")
        status, _, body = self.up.request("GET", "/env")
        self.assertEqual(json.loads(body)["FAKE_MARKER"], "marker-value")

    def test_stats_count_requests_by_path_and_last_request(self):
        before = self.up.stats()["requests_by_path"].get("/v1/embeddings", 0)
        self.up.request("POST", "/v1/embeddings", {"model": "count-me", "input": "x"},
                        {"X-Probe": "yes"})
        stats = self.up.stats()
        self.assertEqual(stats["requests_by_path"]["/v1/embeddings"], before + 1)
        self.assertEqual(stats["last_model"], "count-me")
        self.assertEqual(json.loads(stats["last_body"])["model"], "count-me")
        self.assertEqual(stats["last_headers"]["x-probe"], "yes")
        self.assertEqual(stats["in_flight"], 0)

    def test_bad_json_is_400_in_openai_envelope(self):
        status, _, body = self.up.request("POST", "/v1/chat/completions", "{nope")
        self.assertEqual(status, 400)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], 400)
        self.assertIn("invalid JSON", err["message"])

    def test_unknown_path_404_and_wrong_method_405(self):
        self.assertEqual(self.up.request("GET", "/v2/nothing")[0], 404)
        self.assertEqual(self.up.request("GET", "/v1/chat/completions")[0], 405)

    def test_keep_alive_and_pipelined_requests_answered_in_order(self):
        req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s")
        bodies = [json.dumps({"prompt": "p", "max_tokens": n}).encode() for n in (1, 2, 3)]
        data = b"".join(req % (len(b), b) for b in bodies)
        data += b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        out = raw_exchange(self.up.port, data, want_responses=4)
        self.assertEqual(count_responses(out), 4)
        self.assertLess(out.index(b'"tok0 "'), out.index(b'"tok0 tok1 "'))
        self.assertLess(out.index(b'"tok0 tok1 "'), out.index(b'"tok0 tok1 tok2 "'))
        self.assertTrue(out.rstrip().endswith(b'{"status":"ok"}'))
        self.assertEqual(out.count(b"Connection: keep-alive"), 4)

    def test_chunked_request_body(self):
        body = json.dumps({"prompt": "x", "max_tokens": 1}).encode()
        half = len(body) // 2
        data = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (half, body[:half], len(body) - half, body[half:]))
        out = raw_exchange(self.up.port, data)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"), out[:100])
        self.assertIn(b'"text":"tok0 "', out)

    def test_expect_100_continue(self):
        body = json.dumps({"prompt": "x", "max_tokens": 1}).encode()
        s = socket.create_connection(("127.0.0.1", self.up.port), timeout=10)
        try:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            self.assertEqual(s.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(body)
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200 OK"))
        finally:
            s.close()

    def test_malformed_request_gets_400_and_server_lives(self):
        out = raw_exchange(self.up.port, b"NOT HTTP AT ALL\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request"), out)
        self.assertIn(b"Connection: close", out)
        out = raw_exchange(self.up.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:60])
        self.assertEqual(self.up.request("GET", "/health")[0], 200)
        self.assertGreaterEqual(self.up.stats()["bad_requests"], 2)

    def test_oversized_body_is_413(self):
        out = raw_exchange(self.up.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Length: 999999999999\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:60])

    def test_thousands_of_concurrent_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = 2000
        if soft < n + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
        socks = []
        try:
            for _ in range(n):
                socks.append(socket.create_connection(("127.0.0.1", self.up.port), timeout=10))
            self.assertTrue(wait_for(lambda: self.up.stats()["open_connections"] >= n + 1),
                            "not every connection was accepted")
            for s in socks:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in socks:
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200 OK"))
        finally:
            for s in socks:
                s.close()


class StreamingTest(unittest.TestCase):
    def test_client_disconnect_mid_stream_is_counted(self):
        with FakeUpstream("--tokens", "1000", "--tokens-per-second", "50") as up:
            body = json.dumps({"stream": True, "messages": []}).encode()
            s = socket.create_connection(("127.0.0.1", up.port), timeout=10)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            got = b""
            while b"tok0" not in got:
                got += s.recv(4096)
            self.assertEqual(up.stats()["in_flight"], 1)
            s.close()
            self.assertTrue(wait_for(lambda: up.stats()["client_disconnects"] == 1),
                            up.stats())
            stats = up.stats()
            self.assertEqual(stats["in_flight"], 0)
            self.assertEqual(stats["streams_completed"], 0)

    def test_token_rate_paces_the_stream(self):
        # 10 tokens at 100/s take about 0.1 s; only the order of magnitude is
        # checked (no tight timing), to prove the rate flag is honoured at all.
        with FakeUpstream("--tokens", "10", "--tokens-per-second", "100") as up:
            start = time.monotonic()
            status, _, body = up.request("POST", "/v1/completions",
                                         {"prompt": "x", "stream": True})
            elapsed = time.monotonic() - start
            self.assertEqual(status, 200)
            self.assertEqual(len(sse_events(body)), 13)
            self.assertGreater(elapsed, 0.09)
            self.assertEqual(up.stats()["streams_completed"], 1)


    def test_stamped_chunks_carry_their_monotonic_send_time(self):
        with FakeUpstream("--tokens", "3", "--stamp-chunks") as up:
            before = time.monotonic_ns()
            status, _, body = up.request("POST", "/v1/chat/completions",
                                         {"messages": [], "stream": True})
            after = time.monotonic_ns()
            self.assertEqual(status, 200)
            stamps = [json.loads(e)["fake_sent_ns"] for e in sse_events(body)
                      if e != "[DONE]"]
            self.assertEqual(len(stamps), 5)
            self.assertEqual(stamps, sorted(stamps))
            self.assertTrue(before <= stamps[0] and stamps[-1] <= after, (before, stamps, after))

    def test_status_route_answers_any_status_empty(self):
        with FakeUpstream() as up:
            self.assertEqual(up.request("GET", "/status/204")[0], 204)
            status, _, body = up.request("GET", "/status/418")
            self.assertEqual((status, body), (418, b""))
            self.assertEqual(up.request("GET", "/status/99")[0], 404)


class StartupModeTest(unittest.TestCase):
    def test_ready_after_ms_answers_503_then_200_and_prints_ready_line(self):
        with FakeUpstream("--ready-after-ms", "400", "--ready-line", "model loaded OK") as up:
            status, _, body = up.request("GET", "/health")
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(body)["error"],
                             {"code": 503, "message": "Loading model",
                              "type": "unavailable_error"})
            self.assertNotIn("model loaded OK", up.lines("out"))
            self.assertTrue(up.wait_output("^model loaded OK$"))
            self.assertEqual(up.request("GET", "/health")[0], 200)

    def test_exit_immediately(self):
        with FakeUpstream("--exit-immediately", "3", wait_listening=False) as up:
            self.assertEqual(up.proc.wait(10), 3)
            self.assertTrue(up.output_closed())
            self.assertIn("exiting at once with code 3", " ".join(up.lines("err")))
            self.assertFalse(any("listening" in l for l in up.lines()))

    def test_crash_after_ms_dies_by_signal(self):
        with FakeUpstream("--crash-after-ms", "50") as up:
            self.assertEqual(up.proc.wait(10), -signal.SIGSEGV)

    def test_sigterm_exits_cleanly(self):
        with FakeUpstream() as up:
            up.proc.send_signal(signal.SIGTERM)
            self.assertEqual(up.proc.wait(10), 0)

    def test_ignore_sigterm_keeps_running(self):
        with FakeUpstream("--ignore-sigterm") as up:
            up.proc.send_signal(signal.SIGTERM)
            self.assertTrue(up.wait_output("ignoring SIGTERM"))
            self.assertIsNone(up.proc.poll())
            self.assertEqual(up.request("GET", "/health")[0], 200)
            up.proc.send_signal(signal.SIGKILL)
            self.assertEqual(up.proc.wait(10), -signal.SIGKILL)

    def test_fork_child_holds_output_pipes_until_group_killed(self):
        with FakeUpstream("--fork-child") as up:
            line = up.wait_output(r"forked child pid (\d+)")
            child = int(line.rsplit(" ", 1)[1])
            up.proc.send_signal(signal.SIGTERM)
            self.assertEqual(up.proc.wait(10), 0)
            # The grandchild ignores SIGTERM, keeps the pipes, stays alive.
            self.assertFalse(up.output_closed(timeout=0.2))
            os.kill(child, 0)
            os.killpg(up.proc.pid, signal.SIGKILL)
            self.assertTrue(up.output_closed())
            self.assertTrue(wait_for(lambda: not _alive(child)), "grandchild survived")

    def test_log_every_ms_prints_progress(self):
        with FakeUpstream("--log-every-ms", "10") as up:
            self.assertTrue(up.wait_output("progress line 3$"))

    def test_bad_flag_exits_2_with_usage(self):
        proc = subprocess.run([runfile(FakeUpstream.BINARY), "--tokens", "many"],
                              capture_output=True, timeout=10)
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"bad value 'many' for --tokens", proc.stderr)
        self.assertIn(b"usage:", proc.stderr)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read (ESRCH).
        return False


if __name__ == "__main__":
    junit.main()
