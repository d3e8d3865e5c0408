// The proxy's event bus for GET /api/events: one SSE stream per reader of
// llama-swap's envelopes (`event: message`, data `{"type","data"}` where
// `data` is a JSON text), carrying model status, the proxy's log lines,
// activity and in-flight counts. A new reader gets the current state first
// (the log history, the models, the in-flight counts), then every change,
// in order. Publishing never waits for a reader: each reader's frames are
// posted to its exchange's loop, and a reader that falls behind is cut
// (StreamSpec::Slow::kCut) with a last `{"type":"dropped"}` message; its
// browser reconnects and gets the state again.
//
//   EventHub hub;
//   hub.SetModels(ModelStatusJson(snapshot));   // Sent when it changed.
//   hub.AddLog("proxy", "listening on ...\n");
//   uint64_t id = hub.Subscribe(stream);        // From the Events handler.
//
// Thread-safe. Publishing takes the hub's lock only when there are readers
// or state to keep (a model change, a log line); an activity with no reader
// takes none.
#ifndef MODELPLANE_PROXY_ANSWERS_EVENT_HUB_H_
#define MODELPLANE_PROXY_ANSWERS_EVENT_HUB_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

class EventHub {
 public:
  // The proxy's log history kept for new readers (llama-swap keeps 100 KB).
  explicit EventHub(size_t log_history_bytes = 100 << 10);

  // One SSE frame: `event: message`, the envelope as its data line.
  static std::string Frame(absl::string_view type, absl::string_view data);

  // A new reader: the state, then every change, until Unsubscribe (or the
  // stream ends: it is forgotten at the next publish). Returns its id.
  uint64_t Subscribe(std::shared_ptr<StreamOut> out);
  // A reader of the proxy's log as plain text (GET /logs/stream): the
  // history first unless `history` is false, then every line.
  uint64_t SubscribeLog(std::shared_ptr<StreamOut> out, bool history);
  void Unsubscribe(uint64_t id);
  // Readers of events (not of the log's text): an activity is made into
  // JSON only for them.
  size_t readers() const { return readers_.load(std::memory_order_relaxed); }

  // modelStatus: the JSON array of models; sent only when it differs from
  // the last.
  void SetModels(std::string json);
  // inflight: sent only when it differs from the last.
  void SetInFlight(std::string json);
  // activity: one finished request (a JSON object).
  void AddActivity(std::string json);
  // logData: {"source","data"}; the proxy's lines are kept for new readers.
  void AddLog(absl::string_view source, absl::string_view text);
  // The log history kept (GET /logs, /logs/stream's history).
  std::string LogHistory() const;
  // An SSE comment to every event reader, so that a quiet stream is not
  // taken for a dead one by what sits between (nginx's proxy_read_timeout
  // is 60 s). The proxy sends one every 15 s.
  void KeepAlive();
  // Every reader's stream ends (drain).
  void EndAll();

 private:
  const size_t log_history_bytes_;
  mutable absl::Mutex mu_;
  struct Reader {
    std::shared_ptr<StreamOut> out;
    bool log = false;  // The plain log text, not event frames.
  };
  // readers_: the event readers among readers_by_id_.
  void CountReaders() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes to every reader of its kind, forgetting those that ended.
  void Send(bool log, const std::string& data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<uint64_t, Reader> readers_by_id_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::string models_ ABSL_GUARDED_BY(mu_) = "[]";
  std::string in_flight_ ABSL_GUARDED_BY(mu_);
  std::string log_ ABSL_GUARDED_BY(mu_);  // The newest log bytes.
  std::atomic<size_t> readers_{0};
};

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_EVENT_HUB_H_
