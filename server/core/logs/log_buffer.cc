#include "server/core/logs/log_buffer.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/base/config.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace modelplane::logs {
namespace {

// absl::MutexLock that ThreadSanitizer can see. Debian's libabsl is not built
// with -fsanitize=thread, so under --config=tsan absl::Mutex::Lock and Unlock
// are invisible to TSan and every guarded access looks like a race (see
// abseil/abseil-cpp#1771). This makes the calls absl makes itself when it is
// built with TSan; in other builds it is absl::MutexLock.
class ABSL_SCOPED_LOCKABLE AnnotatedLock {
 public:
  explicit AnnotatedLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
    __tsan_mutex_pre_lock(mu_, 0);
#endif
    mu_->Lock();
#ifdef ABSL_HAVE_THREAD_SANITIZER
    __tsan_mutex_post_lock(mu_, 0, 0);
#endif
  }
  AnnotatedLock(const AnnotatedLock&) = delete;
  AnnotatedLock& operator=(const AnnotatedLock&) = delete;
  ~AnnotatedLock() ABSL_UNLOCK_FUNCTION() {
#ifdef ABSL_HAVE_THREAD_SANITIZER
    __tsan_mutex_pre_unlock(mu_, 0);
#endif
    mu_->Unlock();
#ifdef ABSL_HAVE_THREAD_SANITIZER
    __tsan_mutex_post_unlock(mu_, 0);
#endif
  }

 private:
  absl::Mutex* const mu_;
};

}  // namespace

LogBuffer::LogBuffer(size_t capacity)
    : capacity_(capacity), ring_(std::make_unique<char[]>(capacity)) {
  // No absl/log in Abseil 20220623: the raw check is its crash-on-bug form.
  ABSL_RAW_CHECK(capacity >= 1, "LogBuffer capacity must be at least 1");
}

void LogBuffer::Append(absl::string_view data) {
  if (data.empty()) return;
  {
    AnnotatedLock lock(&mu_);
    const uint64_t total = data.size();
    // Bytes that would be overwritten within this same call are never
    // copied: O(min(len, capacity)) and no allocation.
    if (data.size() > capacity_) data.remove_prefix(data.size() - capacity_);
    const uint64_t start = end_ + (total - data.size());
    const size_t pos = start % capacity_;
    const size_t first = std::min(data.size(), capacity_ - pos);
    std::memcpy(ring_.get() + pos, data.data(), first);
    std::memcpy(ring_.get(), data.data() + first, data.size() - first);
    end_ += total;
  }
  NotifySubscribers();
}

bool LogBuffer::AtLineStart() const {
  AnnotatedLock lock(&mu_);
  return end_ == BeginLocked() || AtLocked(end_ - 1) == '\n';
}

void LogBuffer::Close(absl::Status why) {
  {
    AnnotatedLock lock(&mu_);
    if (closed_) return;
    closed_ = std::move(why);
  }
  NotifySubscribers();
}

std::optional<absl::Status> LogBuffer::closed() const {
  AnnotatedLock lock(&mu_);
  return closed_;
}

uint64_t LogBuffer::begin_offset() const {
  AnnotatedLock lock(&mu_);
  return BeginLocked();
}

uint64_t LogBuffer::end_offset() const {
  AnnotatedLock lock(&mu_);
  return end_;
}

LogBuffer::Chunk LogBuffer::Read(uint64_t* offset, size_t max_bytes) const {
  Chunk chunk;
  AnnotatedLock lock(&mu_);
  const uint64_t begin = BeginLocked();
  if (*offset > end_) *offset = end_;
  if (*offset < begin) {
    chunk.dropped = begin - *offset;
    *offset = begin;
  }
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(max_bytes, end_ - *offset));
  chunk.data.reserve(n);
  CopyLocked(*offset, n, &chunk.data);
  *offset += n;
  return chunk;
}

uint64_t LogBuffer::HistoryStart(size_t history_bytes) const {
  AnnotatedLock lock(&mu_);
  const uint64_t begin = BeginLocked();
  if (history_bytes == 0 || end_ == begin) return end_;
  const uint64_t start = end_ - std::min<uint64_t>(history_bytes, end_ - begin);
  // Offset 0 starts the output; otherwise a '\n' just before `start` (if it
  // is still retained) makes it a line start.
  if (start == 0 || (start > begin && AtLocked(start - 1) == '\n')) {
    return start;
  }
  // A '\n' as the last byte would leave no history at all: keep the span.
  for (uint64_t pos = start; pos + 1 < end_; ++pos) {
    if (AtLocked(pos) == '\n') return pos + 1;
  }
  return start;
}

std::vector<std::string> LogBuffer::LastLines(size_t n, size_t max_line_bytes,
                                              uint64_t since) const {
  std::vector<std::string> lines;
  AnnotatedLock lock(&mu_);
  const uint64_t begin = std::max(BeginLocked(), std::min(since, end_));
  // Walk back one line [start, stop) at a time.
  uint64_t stop = end_;
  while (lines.size() < n && stop > begin) {
    uint64_t start = stop;
    while (start > begin && AtLocked(start - 1) != '\n') --start;
    uint64_t len = stop - start;
    while (len > 0 && AtLocked(start + len - 1) == '\r') --len;
    if (len > 0) {
      size_t keep =
          static_cast<size_t>(std::min<uint64_t>(len, max_line_bytes));
      // Do not end inside a UTF-8 sequence: last_lines is a proto string.
      if (keep < len) {
        while (keep > 0 && (AtLocked(start + keep) & 0xC0) == 0x80) --keep;
      }
      std::string line;
      line.reserve(keep);
      CopyLocked(start, keep, &line);
      lines.push_back(std::move(line));
    }
    stop = start > begin ? start - 1 : begin;  // Step over the '\n'.
  }
  std::reverse(lines.begin(), lines.end());
  return lines;
}

int LogBuffer::Subscribe(std::function<void()> on_data) {
  if (InCallbackOnThisThread()) {
    // This thread holds callback_mu_ in NotifySubscribers; inserting into
    // the map does not disturb its iteration.
    callback_mu_.AssertHeld();
    const int id = next_id_++;
    subscribers_[id].on_data = std::move(on_data);
    return id;
  }
  AnnotatedLock lock(&callback_mu_);
  const int id = next_id_++;
  subscribers_[id].on_data = std::move(on_data);
  return id;
}

void LogBuffer::Unsubscribe(int id) {
  if (InCallbackOnThisThread()) {
    // Erasing could invalidate the iterator of the running round: mark
    // instead, and NotifySubscribers erases after the round.
    callback_mu_.AssertHeld();
    auto it = subscribers_.find(id);
    if (it != subscribers_.end()) it->second.removed = true;
    return;
  }
  AnnotatedLock lock(&callback_mu_);
  subscribers_.erase(id);
}

uint64_t LogBuffer::BeginLocked() const {
  return end_ > capacity_ ? end_ - capacity_ : 0;
}

char LogBuffer::AtLocked(uint64_t offset) const {
  return ring_[offset % capacity_];
}

void LogBuffer::CopyLocked(uint64_t from, size_t n, std::string* out) const {
  const size_t pos = from % capacity_;
  const size_t first = std::min(n, capacity_ - pos);
  out->append(ring_.get() + pos, first);
  out->append(ring_.get(), n - first);
}

bool LogBuffer::InCallbackOnThisThread() const {
  return notifying_thread_.load(std::memory_order_relaxed) ==
         std::this_thread::get_id();
}

void LogBuffer::NotifySubscribers() {
  AnnotatedLock lock(&callback_mu_);
  if (subscribers_.empty()) return;
  notifying_thread_.store(std::this_thread::get_id(),
                          std::memory_order_relaxed);
  // Subscriptions added by a callback wait for the next Append.
  const int last_id = next_id_ - 1;
  for (auto& [id, subscriber] : subscribers_) {
    if (id > last_id) break;
    if (!subscriber.removed) subscriber.on_data();
  }
  notifying_thread_.store(std::thread::id(), std::memory_order_relaxed);
  // A callback may have unsubscribed any subscriber, visited or not.
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    it = it->second.removed ? subscribers_.erase(it) : std::next(it);
  }
}

std::string DropMarker(uint64_t dropped) {
  return absl::StrCat("[", dropped, " bytes dropped]\n");
}

}  // namespace modelplane::logs
