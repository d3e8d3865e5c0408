#include "proxy/answers/activity.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"
#include "proxy/router/url_params.h"
#include "rapidjson/document.h"

namespace modelplane::proxy::answers {
namespace {

std::string Number(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.3f", *v) : "null";
}

std::string Count(const std::optional<uint64_t>& v) {
  return v ? absl::StrCat(*v) : "null";
}

}  // namespace

void ActivityRing::Add(ActivityEntry e, size_t keep) {
  keep = std::max<size_t>(keep, 1);
  if (ring_.size() > keep || (next_ != 0 && ring_.size() < keep)) {
    // The bound moved: oldest first again, then trimmed to it.
    std::vector<ActivityEntry> ordered = Copy();
    if (ordered.size() > keep) {
      ordered.erase(ordered.begin(),
                    ordered.begin() + static_cast<long>(ordered.size() - keep));
    }
    ring_ = std::move(ordered);
    next_ = 0;
  }
  if (ring_.size() < keep) {
    ring_.push_back(std::move(e));
    return;
  }
  ring_[next_] = std::move(e);
  next_ = (next_ + 1) % ring_.size();
}

std::vector<ActivityEntry> ActivityRing::Copy() const {
  std::vector<ActivityEntry> out;
  out.reserve(ring_.size());
  for (size_t i = 0; i < ring_.size(); ++i) {
    out.push_back(ring_[(next_ + i) % ring_.size()]);
  }
  return out;
}

std::string ErrorMessageOf(absl::string_view body) {
  constexpr size_t kMax = 512;
  if (body.size() < (64 << 10)) {
    rapidjson::Document d;
    d.Parse(body.data(), body.size());
    if (!d.HasParseError() && d.IsObject()) {
      const rapidjson::Value* v = nullptr;
      auto error = d.FindMember("error");
      if (error != d.MemberEnd() && error->value.IsObject()) {
        auto m = error->value.FindMember("message");
        if (m != error->value.MemberEnd()) v = &m->value;
      } else if (error != d.MemberEnd()) {
        v = &error->value;
      } else if (auto m = d.FindMember("message"); m != d.MemberEnd()) {
        v = &m->value;
      }
      if (v != nullptr && v->IsString()) {
        return std::string(v->GetString(),
                           std::min<size_t>(v->GetStringLength(), kMax));
      }
    }
  }
  return std::string(body.substr(0, kMax));
}

std::string ActivityJson(const ActivityEntry& e) {
  return absl::StrCat(
      R"({"id":)", e.id, R"(,"timestamp":)",
      JsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                  absl::FromUnixMillis(e.unix_ms),
                                  absl::UTCTimeZone())),
      R"(,"model":)", JsonString(e.model), R"(,"node":)", JsonString(e.node),
      R"(,"path":)", JsonString(e.path), R"(,"status":)", e.status,
      R"(,"input_tokens":)", Count(e.input_tokens), R"(,"output_tokens":)",
      Count(e.output_tokens), R"(,"tokens_per_second":)",
      Number(e.tokens_per_second), R"(,"time_to_first_token_ms":)",
      Number(e.time_to_first_token_ms), R"(,"queue_wait_ms":)",
      Number(e.queue_wait_ms), R"(,"load_wait_ms":)", Number(e.load_wait_ms),
      R"(,"prompt_tokens_per_second":)", Number(e.prompt_tokens_per_second),
      R"(,"cached_tokens":)", Count(e.cached_tokens), R"(,"draft_tokens":)",
      Count(e.draft_tokens), R"(,"draft_accepted_tokens":)",
      Count(e.draft_accepted_tokens), R"(,"error":)",
      e.error.empty() ? std::string("null") : JsonString(e.error),
      R"(,"duration_ms":)", absl::StrFormat("%.3f", e.duration_ms), "}");
}

std::string ActivityPageJson(const std::vector<ActivityEntry>& newest_first,
                             bool more) {
  std::string data;
  for (const ActivityEntry& e : newest_first) {
    absl::StrAppend(&data, data.empty() ? "" : ",", ActivityJson(e));
  }
  return absl::StrCat(R"({"activity":[)", data, R"(],"next_before":)",
                      more && !newest_first.empty()
                          ? absl::StrCat(newest_first.back().id)
                          : "null",
                      "}");
}

std::string ActivityPage(std::vector<ActivityEntry> entries,
                         absl::string_view model, int status, uint64_t before,
                         size_t limit, size_t keep) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.id > b.id; });
  if (entries.size() > keep) entries.resize(keep);  // The newest only.
  std::string data;
  size_t n = 0;
  uint64_t last = 0;
  bool more = false;
  for (const ActivityEntry& e : entries) {
    if (before != 0 && e.id >= before) continue;
    if (!model.empty() && e.model != model) continue;
    if (status != 0 && e.status != status) continue;
    if (n == limit) {
      more = true;
      break;
    }
    ++n;
    last = e.id;
    absl::StrAppend(&data, data.empty() ? "" : ",", ActivityJson(e));
  }
  return absl::StrCat(R"({"activity":[)", data, R"(],"next_before":)",
                      more ? absl::StrCat(last) : "null", "}");
}

void Activity(const AnswerRequest& q, const ActivityFn& activity,
              const ActivityStoreFn& store, Responder* r) {
  if (!activity) return r->RespondError(503, "no activity log here");
  absl::string_view target = q.head.target;
  std::string model = router::QueryParam(target, "model");
  int status = 0;
  uint64_t before = 0;
  int limit = 100;
  std::string v;
  if (!(v = router::QueryParam(target, "status")).empty() &&
      !absl::SimpleAtoi(v, &status)) {
    return r->RespondError(400, "status must be a number, not '" + v + "'");
  }
  if (!(v = router::QueryParam(target, "before")).empty() &&
      !absl::SimpleAtoi(v, &before)) {
    return r->RespondError(400, "before must be an id, not '" + v + "'");
  }
  if (!(v = router::QueryParam(target, "limit")).empty() &&
      (!absl::SimpleAtoi(v, &limit) || limit < 1 || limit > 1000)) {
    return r->RespondError(400,
                           "limit must be between 1 and 1000, not '" + v + "'");
  }
  Responder::Deferred later = r->Later();
  if (store) {
    // The SQLite store (store.path): every request it kept, on its thread.
    bool asked = store({model, status, before, static_cast<size_t>(limit)},
                       [later](absl::StatusOr<std::string> page) {
                         later([page = std::move(page)](Responder* r) {
                           if (!page.ok()) {
                             return r->RespondError(
                                 500, std::string(page.status().message()));
                           }
                           r->Respond(200, "application/json", *page);
                         });
                       });
    if (asked) return;
  }
  size_t keep = q.snapshot.activity_limit();
  activity([later, model, status, before, limit,
            keep](std::vector<ActivityEntry> entries) {
    std::string page = ActivityPage(std::move(entries), model, status, before,
                                    static_cast<size_t>(limit), keep);
    later([page = std::move(page)](Responder* r) {
      r->Respond(200, "application/json", page);
    });
  });
}

}  // namespace modelplane::proxy::answers
