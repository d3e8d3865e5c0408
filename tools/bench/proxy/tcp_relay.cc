// The floor for a proxy's added latency in tools/bench/proxy: a relay that
// does no work at all. Every accepted connection gets its own connection to
// the upstream, and bytes are copied both ways as they come (one thread,
// epoll, a read and a write per arrival; no parsing, no buffering beyond one
// read). Whatever it adds to a direct request is the cost of the extra hop
// itself on this machine (a wakeup, two socket calls, loopback TCP), which
// any proxy pays before it does anything.
//
//   tcp_relay LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
//
// A benchmark tool only: writes block (loopback, small messages), and it
// runs until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: tcp_relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  sockaddr_in listen_addr = Loopback(atoi(argv[1]));
  sockaddr_in upstream_addr = Loopback(atoi(argv[2]));
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, reinterpret_cast<sockaddr*>(&listen_addr),
           sizeof(listen_addr)) != 0 ||
      listen(lfd, 4096) != 0) {
    perror("tcp_relay: listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  // peer[fd] is the other end of fd's pair, or -1.
  std::vector<int> peer;
  auto pair_of = [&](int fd) -> int& {
    if (static_cast<size_t>(fd) >= peer.size()) {
      peer.resize(static_cast<size_t>(fd) + 1, -1);
    }
    return peer[static_cast<size_t>(fd)];
  };
  auto close_pair = [&](int fd) {
    int other = pair_of(fd);
    pair_of(fd) = -1;
    close(fd);
    if (other >= 0) {
      pair_of(other) = -1;
      close(other);
    }
  };
  char buf[65536];
  epoll_event events[256];
  while (true) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("tcp_relay: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        while (true) {
          int cfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
          if (cfd < 0) break;
          int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          if (connect(ufd, reinterpret_cast<sockaddr*>(&upstream_addr),
                      sizeof(upstream_addr)) != 0) {
            close(ufd);
            close(cfd);
            continue;
          }
          NoDelay(cfd);
          NoDelay(ufd);
          pair_of(cfd) = ufd;
          pair_of(ufd) = cfd;
          for (int s : {cfd, ufd}) {
            epoll_event e{};
            e.events = EPOLLIN;
            e.data.fd = s;
            epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
          }
        }
        continue;
      }
      if (pair_of(fd) < 0) continue;  // Closed earlier in this batch.
      ssize_t got = read(fd, buf, sizeof(buf));
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0 || !WriteAll(pair_of(fd), buf, static_cast<size_t>(got))) {
        close_pair(fd);  // Either end gone: both go (closing drops epoll).
      }
    }
  }
}
