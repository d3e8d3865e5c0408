#include "proxy/answers/event_hub.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"

namespace modelplane::proxy::answers {

EventHub::EventHub(size_t log_history_bytes)
    : log_history_bytes_(log_history_bytes) {}

std::string EventHub::Frame(absl::string_view type, absl::string_view data) {
  // The data is a JSON text inside a JSON string, as llama-swap sends it:
  // one `data:` line (JsonString escapes every newline).
  return absl::StrCat("event: message\ndata: {\"type\":", JsonString(type),
                      ",\"data\":", JsonString(data), "}\n\n");
}

void EventHub::CountReaders() {
  size_t n = 0;
  for (const auto& [id, reader] : readers_by_id_) n += reader.log ? 0 : 1;
  readers_.store(n, std::memory_order_relaxed);
}

uint64_t EventHub::Subscribe(std::shared_ptr<StreamOut> out) {
  absl::MutexLock lock(&mu_);
  // The state first, under the lock that orders every change after it.
  if (!log_.empty()) {
    out->Write(Frame("logData", absl::StrCat(R"({"source":"proxy","data":)",
                                             JsonString(log_), "}")));
  }
  out->Write(Frame("modelStatus", models_));
  if (!in_flight_.empty()) out->Write(Frame("inflight", in_flight_));
  uint64_t id = ++next_id_;
  readers_by_id_.emplace(id, Reader{std::move(out), false});
  CountReaders();
  return id;
}

uint64_t EventHub::SubscribeLog(std::shared_ptr<StreamOut> out, bool history) {
  absl::MutexLock lock(&mu_);
  if (history && !log_.empty()) out->Write(log_);
  uint64_t id = ++next_id_;
  readers_by_id_.emplace(id, Reader{std::move(out), true});
  CountReaders();
  return id;
}

void EventHub::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  readers_by_id_.erase(id);
  CountReaders();
}

void EventHub::Send(bool log, const std::string& data) {
  for (auto it = readers_by_id_.begin(); it != readers_by_id_.end();) {
    if (it->second.out->closed()) {
      it = readers_by_id_.erase(it);
      continue;
    }
    if (it->second.log == log) it->second.out->Write(data);
    ++it;
  }
  CountReaders();
}

void EventHub::SetModels(std::string json) {
  absl::MutexLock lock(&mu_);
  if (json == models_) return;
  models_ = std::move(json);
  Send(false, Frame("modelStatus", models_));
}

void EventHub::SetInFlight(std::string json) {
  absl::MutexLock lock(&mu_);
  if (json == in_flight_) return;
  in_flight_ = std::move(json);
  Send(false, Frame("inflight", in_flight_));
}

void EventHub::AddActivity(std::string json) {
  if (readers() == 0) return;  // Nothing kept: the activity log has it.
  absl::MutexLock lock(&mu_);
  Send(false, Frame("activity", json));
}

void EventHub::AddLog(absl::string_view source, absl::string_view text) {
  absl::MutexLock lock(&mu_);
  absl::StrAppend(&log_, text);
  if (log_.size() > log_history_bytes_) {
    // From a line start within the kept span, as the manager's history.
    size_t cut = log_.size() - log_history_bytes_;
    size_t line = log_.find('\n', cut);
    log_.erase(0, line == std::string::npos ? cut : line + 1);
  }
  if (readers_by_id_.empty()) return;
  Send(true, std::string(text));
  Send(false,
       Frame("logData", absl::StrCat(R"({"source":)", JsonString(source),
                                     R"(,"data":)", JsonString(text), "}")));
}

std::string EventHub::LogHistory() const {
  absl::MutexLock lock(&mu_);
  return log_;
}

void EventHub::KeepAlive() {
  if (readers() == 0) return;
  absl::MutexLock lock(&mu_);
  Send(false, ": keepalive\n\n");
}

void EventHub::EndAll() {
  std::map<uint64_t, Reader> readers;
  {
    absl::MutexLock lock(&mu_);
    readers.swap(readers_by_id_);
    readers_.store(0, std::memory_order_relaxed);
  }
  for (auto& [id, reader] : readers) reader.out->End();
}

}  // namespace modelplane::proxy::answers
