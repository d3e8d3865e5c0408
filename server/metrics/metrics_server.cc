#include "server/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace modelplane::metrics {
namespace {

// What a client has to send its request head (and to take each piece of
// the answer), and the head's size.
constexpr int kRequestMs = 2000;
constexpr size_t kMaxHead = 8192;

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Answer(int status, const char* reason, const std::string& type,
                   const std::string& body, bool head) {
  return absl::StrCat("HTTP/1.1 ", status, " ", reason,
                      "\r\nContent-Type: ", type,
                      "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", head ? "" : body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, Render render) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen wants HOST:PORT, not '", listen, "'"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535 || host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen wants HOST:PORT, not '", listen, "'"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc =
      getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-listen: cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) != 0 ||
      ::listen(fd, 16) != 0) {
    std::string why = strerror(errno);
    if (fd >= 0) close(fd);
    freeaddrinfo(found);
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen: cannot listen on ", listen, ": ", why));
  }
  freeaddrinfo(found);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    close(fd);
    return absl::InternalError("--metrics-listen: pipe failed");
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(
      fd, bound_port, pipe_fds[0], pipe_fds[1], std::move(render)));
}

MetricsServer::MetricsServer(int fd, int port, int wake_read, int wake_write,
                             Render render)
    : fd_(fd),
      port_(port),
      wake_read_(wake_read),
      wake_write_(wake_write),
      render_(std::move(render)) {
  thread_ = std::thread([this] { Run(); });
}

MetricsServer::~MetricsServer() {
  char c = 0;
  (void)!write(wake_write_, &c, 1);
  thread_.join();
  close(fd_);
  close(wake_read_);
  close(wake_write_);
}

void MetricsServer::Run() {
  while (true) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    // A scraper that stops reading holds the answer at most this long (and
    // so the shutdown, which joins this thread).
    timeval bound{kRequestMs / 1000, 0};
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
    Serve(client);
    close(client);
  }
}

void MetricsServer::Serve(int client) {
  std::string head;
  absl::Time deadline = absl::Now() + absl::Milliseconds(kRequestMs);
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() > kMaxHead) {
      WriteAll(client, Answer(431, "Request Header Fields Too Large",
                              "text/plain", "request head too large\n", false));
      return;
    }
    int left =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p[2] = {{client, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (left <= 0 || poll(p, 2, left) <= 0 || p[1].revents != 0) return;
    char buf[2048];
    ssize_t n = recv(client, buf, sizeof(buf), 0);
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  std::vector<absl::string_view> line =
      absl::StrSplit(absl::string_view(head).substr(0, head.find("\r\n")), ' ');
  if (line.size() != 3 || !absl::StartsWith(line[2], "HTTP/1.")) {
    WriteAll(client, Answer(400, "Bad Request", "text/plain",
                            "not an HTTP/1.x request\n", false));
    return;
  }
  absl::string_view path = line[1].substr(0, line[1].find('?'));
  bool head_only = line[0] == "HEAD";
  if (line[0] != "GET" && !head_only) {
    WriteAll(client, Answer(405, "Method Not Allowed", "text/plain",
                            "GET /metrics\n", false));
    return;
  }
  if (path != "/metrics") {
    WriteAll(client, Answer(404, "Not Found", "text/plain",
                            "modelmanager serves /metrics here\n", head_only));
    return;
  }
  WriteAll(client, Answer(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                          render_(), head_only));
}

}  // namespace modelplane::metrics
