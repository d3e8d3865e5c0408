#include "server/rpc/stream_limits.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace modelplane::rpc {
namespace {

// A burst this large, closed to half, is worth a trim.
constexpr int kTrimAfter = 64;

}  // namespace

StreamLimits::StreamLimits(Options options, Log log, MemoryTrimmer* trimmer)
    : options_(options), log_(std::move(log)), trimmer_(trimmer) {}

std::string StreamLimits::PeerKey(absl::string_view peer) {
  if (!absl::StartsWith(peer, "ipv4:") && !absl::StartsWith(peer, "ipv6:")) {
    return std::string(peer);
  }
  size_t colon = peer.rfind(':');
  // "ipv6:[::1]:80": the port follows the bracket.
  if (colon == absl::string_view::npos || colon < 5 ||
      (absl::StartsWith(peer, "ipv6:[") && peer[colon - 1] != ']')) {
    return std::string(peer);
  }
  return std::string(peer.substr(0, colon));
}

absl::StatusOr<std::unique_ptr<StreamLimits::Slot>> StreamLimits::Open(
    absl::string_view peer, absl::string_view rpc) {
  std::string key = PeerKey(peer);
  std::string refusal;
  {
    absl::MutexLock lock(&mu_);
    int& mine = by_peer_[key];
    if (mine >= options_.per_peer || open_ >= options_.total) {
      ++refused_;
      refusal = mine >= options_.per_peer
                    ? absl::StrCat(mine, " streams are open from ", key,
                                   " (--max-streams-per-peer ",
                                   options_.per_peer, ")")
                    : absl::StrCat(open_, " streams are open (--max-streams ",
                                   options_.total, ")");
      if (mine == 0) by_peer_.erase(key);
      absl::Time now = absl::Now();
      if (log_ && now - last_log_ >= absl::Seconds(1)) {
        last_log_ = now;
        log_(absl::StrCat("refused a ", rpc, " stream: ", refusal, "; ",
                          refused_, " refused so far"));
      }
    } else {
      ++mine;
      ++open_;
      if (open_ > peak_) peak_ = open_;
    }
  }
  if (!refusal.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many streams: ", refusal));
  }
  return std::unique_ptr<Slot>(new Slot(this, std::move(key)));
}

void StreamLimits::Close(const std::string& peer) {
  bool trim = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_peer_.find(peer);
    if (it != by_peer_.end() && --it->second <= 0) by_peer_.erase(it);
    --open_;
    if (peak_ >= kTrimAfter && open_ <= peak_ / 2) {
      trim = true;
      peak_ = open_;
    }
  }
  if (trim && trimmer_ != nullptr) trimmer_->Request();
}

int StreamLimits::open() {
  absl::MutexLock lock(&mu_);
  return open_;
}

uint64_t StreamLimits::refused() {
  absl::MutexLock lock(&mu_);
  return refused_;
}

}  // namespace modelplane::rpc
