// Exchange, while a streaming request waits for its model's lease: the
// loading feedback llama-swap gives, as SSE comment lines (`: loading ...`)
// or, with the model's sendLoadingState on a chat completion, as
// reasoning_content deltas. Members of Exchange.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/json_string.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

void Exchange::ArmLoadingTimer() {
  if (!loading_timer_) {
    loading_timer_.Init(worker_->loop().loop(), uv_timer_init, this);
  }
  // --loading-interval-ms; 0 (no comments) with sendLoadingState on:
  // llama-swap's pace.
  absl::Duration interval = worker_->context().options().loading_interval;
  if (interval <= absl::ZeroDuration()) interval = absl::Milliseconds(750);
  uv_update_time(worker_->loop().loop());
  uv_timer_start(
      loading_timer_.get(),
      [](uv_timer_t* t) {
        auto* x = static_cast<Exchange*>(t->data);
        if (x->req_.loading && x->in_request()) x->SendLoadingComment();
      },
      static_cast<uint64_t>(absl::ToInt64Milliseconds(interval)), 0);
}

void Exchange::StopLoadingTimer() {
  if (loading_timer_) uv_timer_stop(loading_timer_.get());
}

void Exchange::SendLoadingComment() {
  if (!req_.loading_head_sent) {
    req_.loading_head_sent = true;
    req_.head_sent = true;
    req_.event_stream = true;
    req_.record.status = 200;
    http1::Headers headers = {{"Content-Type", "text/event-stream"},
                              {"Cache-Control", "no-cache"},
                              {"X-Accel-Buffering", "no"}};
    AllowOrigin(&headers);
    TagNode(&headers);
    sink_->SendHead(200, "", headers, std::nullopt);
  }
  // Its place among this proxy's requests waiting for the model.
  int position = node_ != nullptr
                     ? node_->broker().Position(req_.record.model, ticket_)
                     : 0;
  if (req_.loading_state) {
    // A line when it starts, then a dot a tick (and the queue position when
    // it moves), as reasoning_content a chat UI shows while it waits.
    std::string text = req_.loading_state_ticks == 0
                           ? absl::StrCat("Loading ", req_.record.model, "...")
                           : ".";
    if (position > 0 && position != req_.loading_state_position) {
      absl::StrAppend(&text, " (queue position ", position, ")");
    }
    req_.loading_state_position = position;
    ++req_.loading_state_ticks;
    SendLoadingState(text);
    ArmLoadingTimer();
    return;
  }
  std::string line =
      absl::StrFormat(": loading %s %.1fs", req_.record.model,
                      static_cast<double>(uv_hrtime() - req_.admit_ns) / 1e9);
  if (position > 0) absl::StrAppend(&line, ", queue position ", position);
  line += "\n\n";
  sink_->SendData(line);
  ArmLoadingTimer();
}

void Exchange::SendLoadingState(absl::string_view text) {
  // An OpenAI chat.completion.chunk, as llama-swap's loading stream.
  sink_->SendData(absl::StrCat(
      R"(data: {"id":"modelplane-loading","object":"chat.completion.chunk",)",
      R"("created":)", absl::ToUnixSeconds(absl::Now()), R"(,"model":)",
      JsonString(req_.record.model),
      R"(,"choices":[{"index":0,"delta":{"reasoning_content":)",
      JsonString(text), R"(},"finish_reason":null}]})", "\n\n"));
}

}  // namespace modelplane::proxy
