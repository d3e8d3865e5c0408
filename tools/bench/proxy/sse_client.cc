// Per-chunk SSE latency for tools/bench/proxy (proxy_bench.sh runs it).
//
//   sse_client HOST PORT PATH [--streams 50] [--tokens 40] [--model sse]
//
// Opens N streaming completions against a fake_upstream started with
// --stamp-chunks (directly or through a proxy) and, for every chunk, takes
// the time from the upstream making it (its "fake_sent_ns", CLOCK_MONOTONIC)
// to this client reading it. Prints "p50_us p99_us chunks".
//
// One thread on epoll, plain reads, no per-chunk allocation: the client's
// own cost per chunk is a few microseconds, so what it measures is the
// path. (The Python asyncio client it replaces spent about 120 us of CPU a
// chunk and read each chunk 60-80 us after it arrived, on the same two cores
// as the proxy under test.) Requests are HTTP/1.0, so every path answers
// with the body as is (no chunked framing to undo) and closes after.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Stream {
  int fd = -1;
  std::string tail;  // The part of the last read after its last '\n'.
};

constexpr char kStamp[] = "\"fake_sent_ns\":";

// Takes every stamp in the complete lines of `data` (up to its last '\n');
// keeps the rest for the next read.
void Scan(Stream* s, const char* data, size_t n, int64_t now,
          std::vector<int64_t>* samples) {
  s->tail.append(data, n);
  size_t end = s->tail.rfind('\n');
  if (end == std::string::npos) return;
  const char* p = s->tail.data();
  const char* stop = p + end;
  const size_t stamp_len = sizeof(kStamp) - 1;
  while (true) {
    const char* hit = static_cast<const char*>(
        memmem(p, static_cast<size_t>(stop - p), kStamp, stamp_len));
    if (hit == nullptr) break;
    p = hit + stamp_len;
    int64_t sent = 0;
    while (p < stop && *p >= '0' && *p <= '9') sent = sent * 10 + (*p++ - '0');
    samples->push_back(now - sent);
  }
  s->tail.erase(0, end + 1);
}

int Connect(const sockaddr_in& addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

int Usage() {
  fprintf(stderr,
          "usage: sse_client HOST PORT PATH [--streams N] [--tokens N] "
          "[--model NAME]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2 != 0) return Usage();
  const char* host = argv[1];
  int port = atoi(argv[2]);
  std::string path = argv[3];
  int streams = 50;
  int tokens = 40;
  std::string model = "sse";
  for (int i = 4; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--streams") {
      streams = atoi(argv[i + 1]);
    } else if (flag == "--tokens") {
      tokens = atoi(argv[i + 1]);
    } else if (flag == "--model") {
      model = argv[i + 1];
    } else {
      return Usage();
    }
  }
  if (port <= 0 || port > 65535 || streams <= 0 || tokens <= 0) {
    return Usage();
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "sse_client: %s is not an IPv4 address\n", host);
    return 2;
  }
  std::string body =
      "{\"model\":\"" + model +
      "\",\"stream\":true,\"max_tokens\":" + std::to_string(tokens) +
      ",\"messages\":[]}";
  std::string request = "POST " + path + " HTTP/1.0\r\nHost: " + host + ":" +
                        std::to_string(port) +
                        "\r\nContent-Type: application/json\r\n"
                        "Content-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Stream> all(static_cast<size_t>(streams));
  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(streams) * (tokens + 2));
  // Starts spread over one chunk interval (at 20 chunks/s): streams started
  // together would tick together, and the client would measure its own
  // bursts.
  const int64_t spread_ns = 50000000;
  const int64_t start = NowNs();
  int started = 0;
  int open = 0;
  char buf[65536];
  epoll_event events[64];
  while (started < streams || open > 0) {
    int64_t now = NowNs();
    while (started < streams && now >= start + spread_ns * started / streams) {
      Stream& s = all[static_cast<size_t>(started)];
      s.fd = Connect(addr);
      if (s.fd < 0 || !WriteAll(s.fd, request)) {
        fprintf(stderr, "sse_client: stream %d: %s\n", started,
                strerror(errno));
        return 1;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(started);
      epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
      ++started;
      ++open;
    }
    int timeout_ms = -1;
    if (started < streams) {
      int64_t next = start + spread_ns * started / streams;
      timeout_ms = static_cast<int>(std::max<int64_t>(0, next - now) / 1000000);
    }
    int n = epoll_wait(ep, events, 64, timeout_ms);
    if (n < 0 && errno != EINTR) {
      perror("sse_client: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      Stream& s = all[events[i].data.u32];
      ssize_t got = read(s.fd, buf, sizeof(buf));
      int64_t read_at = NowNs();
      if (got > 0) {
        Scan(&s, buf, static_cast<size_t>(got), read_at, &samples);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s.fd, nullptr);
        close(s.fd);
        s.fd = -1;
        --open;
      }
    }
  }
  close(ep);
  if (samples.empty()) {
    printf("nan nan 0\n");
    return 1;
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    size_t i =
        std::min(samples.size() - 1,
                 static_cast<size_t>(q * static_cast<double>(samples.size())));
    return static_cast<double>(samples[i]) / 1000.0;
  };
  printf("%.1f %.1f %zu\n", at(0.5), at(0.99), samples.size());
  return 0;
}
