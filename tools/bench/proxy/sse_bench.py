"""SSE memory measurement for tools/bench/proxy (run by proxy_bench.sh; the
per-chunk latency is sse_client.cc's).

  sse_bench.py memory URL --streams 10000 --pids 123,456
      Opens N streams to a slow model, waits until each has its first chunk,
      and prints the growth of the pids' summed RSS per stream in KiB (and
      the streams actually opened), then closes them all.

Requests are HTTP/1.0, so every path answers with the body as is (no
chunked framing for the client to undo) and the connection closes after.
"""

import argparse
import asyncio
import resource
import sys
from urllib.parse import urlparse


def request(url, tokens, model):
    u = urlparse(url)
    body = ('{"model":"%s","stream":true,"max_tokens":%d,"messages":[]}'
            % (model, tokens)).encode()
    head = ("POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (u.path, u.netloc, len(body))).encode()
    return u.hostname, u.port, head + body


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def memory(args):
    host, port, payload = request(args.url, 100000, args.model)
    pids = [int(p) for p in args.pids.split(",") if p]
    before = rss_kib(pids)
    open_streams = []

    async def opener():
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            got = b""
            while b"data: {" not in got:
                data = await asyncio.wait_for(reader.read(4096), 60)
                if not data:
                    return
                got += data
            open_streams.append(writer)
        except (OSError, asyncio.TimeoutError):
            pass

    # In waves: a burst of 10,000 connects overflows the listen backlogs.
    for i in range(0, args.streams, 500):
        await asyncio.gather(*(opener() for _ in range(min(500, args.streams - i))))
    await asyncio.sleep(1)
    after = rss_kib(pids)
    n = len(open_streams)
    print("%.1f %d" % ((after - before) / max(n, 1), n))
    for w in open_streams:
        w.close()
    await asyncio.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["memory"])
    ap.add_argument("url")
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--pids", default="")
    ap.add_argument("--model", default="sse")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(memory(args))


if __name__ == "__main__":
    sys.exit(main())
