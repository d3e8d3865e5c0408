#include "proxy/worker/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/worker/client_connection.h"

namespace modelplane::proxy {

Worker::Worker(ProxyContext* context)
    : context_(context), routing_(&context->routing()) {
  loop_.RunSync([this] {
    pool_ = std::make_unique<upstream::UpstreamPool>(loop_.loop());
    store_timer_.Init(loop_.loop(), &Worker::OnStoreTimer, this);
  });
}

void Worker::AddActivity(answers::ActivityEntry e, size_t keep) {
  uint64_t version = context_->store_version();
  if (version != store_version_) {
    store_ = context_->store();
    store_version_ = version;
  }
  const store::ActivityStore* store = store_.get();
  if (store == nullptr || e.id <= store->max_id()) {
    activity_.Add(std::move(e), keep);
    return;
  }
  // The store answers the queries: the entry goes there only. Room for a
  // whole hand-over at once (a growing vector moved each entry twice);
  // the store gives back an earlier hand-over's vector, emptied.
  constexpr size_t kHandOver = 256;
  if (to_store_.capacity() < kHandOver) to_store_.reserve(kHandOver);
  to_store_.push_back(std::move(e));
  // Handed over within 100 ms, in one batch; kHandOver go at once.
  if (to_store_.size() >= kHandOver) {
    FlushToStore();
  } else if (!store_timer_.armed()) {
    store_timer_.Arm(100);
  }
}

void Worker::OnStoreTimer(void* data) {
  static_cast<Worker*>(data)->FlushToStore();
}

void Worker::FlushToStore() {
  store_timer_.Disarm();
  if (to_store_.empty()) return;
  if (store_ != nullptr) store_->HandOver(&to_store_);
  to_store_.clear();
}

void Worker::LetGoOfStore() {
  // What was gathered goes to the store it was gathered for (then written
  // before that store closes); the next entry reads the new one.
  FlushToStore();
  store_.reset();
  store_version_ = 0;
}

Worker::~Worker() { Stop(); }

namespace {

// A TCP socket bound to host:port (SO_REUSEPORT when `share`: every worker
// binds the same port; libuv 1.44 has no flag for it, so the socket is made
// here). Returns the descriptor.
absl::StatusOr<int> BindSocket(const std::string& host, int port, bool share) {
  sockaddr_storage addr{};
  bool v6 = host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(host.c_str(), port,
                            reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(host.c_str(), port,
                            reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) return absl::InvalidArgumentError("bad listen address " + host);
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot make a socket: ", strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (share) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr),
           v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in)) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(
        "cannot bind ", host, ":", port, ": ", strerror(err),
        err == EADDRINUSE && !share ? " (another modelproxy?)" : ""));
  }
  return fd;
}

}  // namespace

absl::Status Worker::CheckPortFree(const std::string& host, int port) {
  // Without SO_REUSEPORT: fails if anyone holds the port, a modelproxy
  // (whose workers bind with SO_REUSEPORT) included.
  absl::StatusOr<int> fd = BindSocket(host, port, /*share=*/false);
  if (!fd.ok()) return fd.status();
  close(*fd);
  return absl::OkStatus();
}

absl::StatusOr<int> Worker::Listen(const std::string& host, int port) {
  absl::StatusOr<int> result = absl::InternalError("not run");
  loop_.RunSync([&] {
    absl::StatusOr<int> bound = BindSocket(host, port, /*share=*/true);
    if (!bound.ok()) {
      result = bound.status();
      return;
    }
    int fd = *bound;
    listener_.Init(loop_.loop(), uv_tcp_init, this);
    uv_tcp_open(listener_.get(), fd);
    int rc = uv_listen(listener_.stream(), 4096, OnConnection);
    if (rc != 0) {
      result = absl::UnavailableError(
          absl::StrCat("cannot listen: ", uv_strerror(rc)));
      return;
    }
    accepting_.store(true);  // Siblings may hand it connections now.
    sockaddr_storage addr{};
    int len = sizeof(addr);
    uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr),
                       &len);
    result = ntohs(addr.ss_family == AF_INET6
                       ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                       : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  });
  return result;
}

void Worker::OnConnection(uv_stream_t* listener, int status) {
  if (status < 0) return;
  auto* w = static_cast<Worker*>(listener->data);
  // SO_REUSEPORT spreads connections by a hash of their addresses: 64
  // connections often land 36/28. The worker holding the fewest takes it.
  // Only to a worker that accepts too: not one still starting, draining or
  // stopped.
  Worker* target = w;
  int least = w->load_.load(std::memory_order_relaxed);
  for (Worker* p : w->siblings_) {
    if (!p->accepting_.load()) continue;
    int load = p->load_.load(std::memory_order_relaxed);
    if (load < least) {
      least = load;
      target = p;
    }
  }
  target->load_.fetch_add(1, std::memory_order_relaxed);
  auto* c = new ClientConnection(w);
  if (uv_accept(listener, c->stream()) != 0) {
    target->load_.fetch_sub(1, std::memory_order_relaxed);
    c->Close();
    return;
  }
  if (target == w) return w->Serve(c);
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(c->stream()), &fd);
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  c->Close();  // Closes its descriptor; `moved` stays open.
  if (moved < 0) {
    target->load_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  target->loop_.Post([target, moved] { target->Adopt(moved); });
}

void Worker::Adopt(int fd) {
  auto* c = new ClientConnection(this);
  if (stopped_ ||
      uv_tcp_open(reinterpret_cast<uv_tcp_t*>(c->stream()), fd) != 0) {
    close(fd);  // Stopped since it was chosen: its peer stopped too.
    load_.fetch_sub(1, std::memory_order_relaxed);
    c->Close();
    return;
  }
  Serve(c);
  // Chosen just before this worker began draining: treated as the
  // connections it accepted itself then.
  if (draining_) c->Drain();
}

void Worker::Serve(ClientConnection* c) {
  connections_.insert(c);
  metrics_.AddConnections(1);
  c->Start();
}

size_t Worker::Drain() {
  size_t left = 0;
  loop_.RunSync([&] {
    accepting_.store(false);
    draining_ = true;
    listener_.Close();
    std::vector<ClientConnection*> open(connections_.begin(),
                                        connections_.end());
    for (ClientConnection* c : open) c->Drain();
    left = connections_.size();
  });
  return left;
}

size_t Worker::connections() {
  size_t n = 0;
  loop_.RunSync([&] { n = connections_.size(); });
  return n;
}

void Worker::Stop() {
  loop_.RunSync([this] {
    if (stopped_) return;
    stopped_ = true;
    accepting_.store(false);
    listener_.Close();
    std::vector<ClientConnection*> open(connections_.begin(),
                                        connections_.end());
    for (ClientConnection* c : open) c->Close();
    pool_.reset();
    FlushToStore();  // What the closed requests added goes too.
    store_timer_.Close();
    store_.reset();
  });
}

}  // namespace modelplane::proxy
