"""A model server whose descendants try to outlive it, for supervisor tests:

    escaping_model.py PORT HOLD_PORT PIDFILE

It forks a child that stays in its process group but ignores SIGTERM; one
that calls setsid() (a session and group of its own) and keeps a listening
socket on HOLD_PORT; and, through a double fork and setsid(), /bin/sleep
with an empty environment (no MODELPLANE_SPAWN tag to find it by). It
writes "GROUP_CHILD SESSION_CHILD BARE_CHILD" to PIDFILE, then answers
GET /health with 200. Each child ends itself after 10 minutes, so a test
that fails cannot leak them for good.
"""

import http.server
import os
import signal
import socket
import sys
import time


def linger():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
    os._exit(0)


def main():
    port, hold, pidfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    group_child = os.fork()
    if group_child == 0:
        linger()
    session_child = os.fork()
    if session_child == 0:
        os.setsid()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", hold))
        sock.listen(1)
        linger()
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        bare = os.fork()
        if bare == 0:
            os.execve("/bin/sleep", ["sleep", "600"], {})
        os.write(w, b"%d" % bare)
        os._exit(0)  # The bare child is an orphan from now on.
    os.close(w)
    bare_child = int(os.read(r, 32))
    os.waitpid(middle, 0)
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d %d %d\n" % (group_child, session_child, bare_child))
    os.rename(pidfile + ".tmp", pidfile)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()


if __name__ == "__main__":
    main()
