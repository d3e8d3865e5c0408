"""A WebSocket echo server (RFC 6455, standard library only), run as a model
behind modelproxy in websocket_e2e_test.py.

    ws_echo.py --port N

GET /health answers 200. GET /ws... with Upgrade: websocket answers 101 and
then, in the same write, a text message "hello <path>"; after that each
text or binary message is echoed back, a ping gets its pong and a close its
close. GET /stats answers {"opened": n, "closed": n}: WebSocket connections
accepted, and those that ended (by either side). Anything else is 404.
"""

import argparse
import base64
import hashlib
import http.server
import json
import socketserver
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
lock = threading.Lock()
stats = {"opened": 0, "closed": 0}


def read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def read_frame(f):
    b0, b1 = read_exact(f, 2)
    opcode = b0 & 0x0F
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(f, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(f, 8))[0]
    mask = read_exact(f, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = bytearray(read_exact(f, n))
    for i in range(n):
        payload[i] ^= mask[i % 4]
    return opcode, bytes(payload)


def frame(opcode, payload):
    """A server frame: final, unmasked."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, b"OK")
        if self.path == "/stats":
            with lock:
                body = json.dumps(stats).encode()
            return self.reply(200, body)
        if (self.path.startswith("/ws")
                and self.headers.get("Upgrade", "").lower() == "websocket"):
            return self.websocket()
        self.reply(404, b"not found")

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(
            hashlib.sha1((key + GUID).encode()).digest()).decode()
        # The 101 and a first message in one write: they reach the proxy in
        # one read.
        self.wfile.write(
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept
             ).encode() + frame(1, b"hello " + self.path.encode()))
        with lock:
            stats["opened"] += 1
        try:
            while True:
                opcode, payload = read_frame(self.rfile)
                if opcode in (1, 2):
                    self.wfile.write(frame(opcode, payload))
                elif opcode == 9:
                    self.wfile.write(frame(10, payload))
                elif opcode == 8:
                    self.wfile.write(frame(8, payload[:2]))
                    break
        except (EOFError, OSError):
            pass
        finally:
            with lock:
                stats["closed"] += 1
            self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
