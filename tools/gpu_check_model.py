#!/usr/bin/env python3
"""A stand-in model for tools/gpu_check.sh: takes --gib GiB of CUDA memory
with PyTorch (as a model server loads its weights), then answers GET
/health with 200 on --port until it is stopped. Prints CUDA's own
out-of-memory error and exits 1 when the memory is not there."""

import argparse
import http.server
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gib", type=float, required=True)
    args = p.parse_args()
    import torch  # pylint: disable=import-outside-toplevel
    t0 = time.monotonic()
    torch.cuda.init()
    try:
        block = torch.empty(int(args.gib * (1 << 30)), dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as e:
        print("gpu_check_model: %s" % e, flush=True)
        sys.exit(1)
    print("gpu_check_model: took %.1f GiB in %.2f s on %s" % (
        args.gib, time.monotonic() - t0, torch.cuda.get_device_name()), flush=True)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # pylint: disable=invalid-name
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *unused):
            pass

    http.server.HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
    del block


if __name__ == "__main__":
    main()
