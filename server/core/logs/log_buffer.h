// A model's output (stdout and stderr of all its successive processes) kept in
// a fixed-capacity ring buffer and fanned out to live readers (StreamLogs,
// tests) without ever blocking the writer. The writer is the model's pipe
// reader on the manager's event loop; a slow reader must never stall it (a
// slow log viewer stalling inference was llama-swap issue #875). A reader
// that falls behind loses the oldest output instead and is told how many
// bytes it missed.
//
// Positions are absolute byte offsets since the buffer was created, so a
// reader keeps its own `uint64_t` cursor and needs no registration:
//
//   LogBuffer buffer(64 << 10);
//   uint64_t offset = buffer.HistoryStart(/*history_bytes=*/4096);
//   int id = buffer.Subscribe([&] { wake_reader(); });  // Must not block.
//   ...
//   // On wake, on the reader's thread:
//   LogBuffer::Chunk chunk = buffer.Read(&offset, 64 << 10);
//   if (chunk.dropped > 0) Show(DropMarker(chunk.dropped));
//   Show(chunk.data);
//   ...
//   buffer.Unsubscribe(id);  // After this, wake_reader() is never called.
//
// Thread-safety: one writer thread calls Append; any thread may call the
// other methods.
#ifndef MODELPLANE_SERVER_CORE_LOGS_LOG_BUFFER_H_
#define MODELPLANE_SERVER_CORE_LOGS_LOG_BUFFER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace modelplane::logs {

class LogBuffer {
 public:
  static constexpr size_t kDefaultCapacity = 1 << 20;

  // Allocates the whole ring now; Append never allocates. Requires
  // capacity >= 1 (crashes otherwise).
  explicit LogBuffer(size_t capacity = kDefaultCapacity);

  LogBuffer(const LogBuffer&) = delete;
  LogBuffer& operator=(const LogBuffer&) = delete;

  size_t capacity() const { return capacity_; }

  // Appends `data`; of more than capacity() bytes only the last capacity()
  // are kept (the offsets still count them all). Never waits for readers,
  // only for the short internal mutex. Then, if `data` is not empty, calls
  // every subscriber's callback on this thread, outside the buffer's mutex.
  // Call from the writer thread, never from inside one of this buffer's
  // callbacks.
  void Append(absl::string_view data);
  // Whether what was appended last ended a line (or nothing was): where a
  // line of the manager's own may begin. Any thread.
  bool AtLineStart() const;

  // Retained data is [begin_offset(), end_offset()); the first byte ever
  // appended is offset 0. Any thread.
  uint64_t begin_offset() const;
  uint64_t end_offset() const;

  struct Chunk {
    // Up to max_bytes, starting at the reader's offset (or at begin_offset()
    // if that offset was overwritten).
    std::string data;
    // Bytes the reader missed because they were overwritten before it read
    // them.
    uint64_t dropped = 0;
  };

  // Reads from *offset and advances it past the dropped and returned bytes.
  // An offset beyond end_offset() is clamped to end_offset(). Any thread.
  Chunk Read(uint64_t* offset, size_t max_bytes) const;

  // Where a reader wanting about `history_bytes` of history should start:
  // max(begin, end - history_bytes), moved forward to just after the next
  // '\n' so that history starts at a line start. It is not moved when it is
  // already a line start (offset 0, or just after a '\n') or when the span
  // holds no line start (that would skip everything). 0 -> end_offset().
  // Any thread.
  uint64_t HistoryStart(size_t history_bytes) const;

  // The last `n` non-empty lines of retained output, oldest first, without
  // terminators. A trailing partial line counts; a trailing '\r' (CRLF) is
  // stripped; each line is cut to at most max_line_bytes (not inside a UTF-8
  // sequence). Kept with every FAILED state so that "CUDA out of memory" is
  // visible. Only lines from offset `since` on (one run's). Any thread.
  std::vector<std::string> LastLines(size_t n, size_t max_line_bytes = 1024,
                                     uint64_t since = 0) const;

  // No more output will come (the model was removed, or the manager is
  // shutting down): followers end with `why` once they have read the rest.
  // Wakes every subscriber. The writer thread; idempotent (the first wins).
  void Close(absl::Status why);
  // The status given to Close, or nullopt while open. Any thread.
  std::optional<absl::Status> closed() const;

  // Registers `on_data`, called after each non-empty Append on the writer
  // thread. It must be quick and must not block (typically it wakes the
  // reader, which then calls Read on its own thread). Returns an id for
  // Unsubscribe. Any thread, including from inside a callback.
  int Subscribe(std::function<void()> on_data);

  // Removes a subscription; unknown ids are ignored. Any thread. When it
  // returns, the callback is not running and will never be called again:
  // from another thread it waits for a running round of callbacks to end.
  // From inside a callback of this buffer (the writer thread, which already
  // holds the callbacks mutex) it does not wait: it marks the subscription
  // removed, so that it is skipped for the rest of the round and erased after.
  void Unsubscribe(int id);

 private:
  struct Subscriber {
    std::function<void()> on_data;
    bool removed = false;
  };

  uint64_t BeginLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  char AtLocked(uint64_t offset) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CopyLocked(uint64_t from, size_t n, std::string* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool InCallbackOnThisThread() const;
  void NotifySubscribers();

  const size_t capacity_;

  // Held while callbacks run, so that Unsubscribe from another thread can
  // wait for them. Taken before mu_ (a callback may call Read).
  absl::Mutex callback_mu_;
  // std::map: inserting during a round of callbacks invalidates no iterator.
  std::map<int, Subscriber> subscribers_ ABSL_GUARDED_BY(callback_mu_);
  int next_id_ ABSL_GUARDED_BY(callback_mu_) = 1;
  // The thread running callbacks, or id() when none. Only ever compared with
  // the caller's own id, so relaxed ordering suffices.
  std::atomic<std::thread::id> notifying_thread_{};

  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(callback_mu_);
  // capacity_ bytes; offset o lives at ring_[o % capacity_].
  const std::unique_ptr<char[]> ring_ ABSL_PT_GUARDED_BY(mu_);
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;  // Total bytes ever appended.
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
};

// "[N bytes dropped]\n": what a text reader shows for a Chunk with
// dropped > 0.
std::string DropMarker(uint64_t dropped);

}  // namespace modelplane::logs

#endif  // MODELPLANE_SERVER_CORE_LOGS_LOG_BUFFER_H_
