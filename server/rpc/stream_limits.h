// Bounds on the long-lived calls (the Watch, StreamLogs and Acquire
// streams, and Start, WaitReady and Stop while they wait): each costs the
// manager ~17 KB while open, and nothing else stops one client from opening
// ten thousand. (A data plane holds one Acquire and one Watch stream; an
// operator's mpctl watch or logs -f one more.) A stream is
// admitted while its peer (the client's address, any port) has fewer than
// `per_peer` open and the manager fewer than `total`; past either it is refused
// with RESOURCE_EXHAUSTED, counted and logged (at most one line a second, with
// the running count).
//
// When the open streams fall to half of their peak since the last trim (a
// burst of them closed), the memory they used is handed back to the system
// (MemoryTrimmer): glibc would keep it.
//
//   StreamLimits limits({.per_peer = 256, .total = 4096}, log, &trimmer);
//   absl::StatusOr<std::unique_ptr<StreamLimits::Slot>> slot =
//       limits.Open(ctx->peer(), "Watch");
//   // Held by the stream's reactor; freed when the stream is done.
//
// Thread-safe.
#ifndef MODELPLANE_SERVER_RPC_STREAM_LIMITS_H_
#define MODELPLANE_SERVER_RPC_STREAM_LIMITS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/memory_trimmer.h"

namespace modelplane::rpc {

class StreamLimits {
 public:
  struct Options {
    int per_peer = 256;
    int total = 4096;
  };
  using Log = std::function<void(const std::string&)>;

  // An admitted stream; releases its place when destroyed.
  class Slot {
   public:
    ~Slot() { limits_->Close(peer_); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    friend class StreamLimits;
    Slot(StreamLimits* limits, std::string peer)
        : limits_(limits), peer_(std::move(peer)) {}
    StreamLimits* limits_;
    std::string peer_;
  };

  // `trimmer` may be null (no trims).
  StreamLimits(Options options, Log log, MemoryTrimmer* trimmer);

  // `peer` as gRPC names it ("ipv4:127.0.0.1:5123", "unix:..."); `rpc` for
  // the message.
  absl::StatusOr<std::unique_ptr<Slot>> Open(absl::string_view peer,
                                             absl::string_view rpc);

  int open();
  uint64_t refused();

  // The peer's address without its port: "ipv4:127.0.0.1:5123" ->
  // "ipv4:127.0.0.1", "ipv6:[::1]:80" -> "ipv6:[::1]"; others as they are.
  static std::string PeerKey(absl::string_view peer);

 private:
  void Close(const std::string& peer);

  Options options_;
  Log log_;
  MemoryTrimmer* trimmer_;
  absl::Mutex mu_;
  std::map<std::string, int> by_peer_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_ ABSL_GUARDED_BY(mu_) = 0;  // Since the last trim.
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_STREAM_LIMITS_H_
