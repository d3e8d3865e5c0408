// The OpenAI-style endpoints of fake_upstream: what llama-server answers,
// with deterministic content, so that tests can assert on what a client sees
// through modelplane's proxy.
//
// Endpoints:
//   GET  /health                 503 "Loading model" until ready, then 200.
//   POST /v1/chat/completions    JSON body; "stream": true gives SSE.
//   POST /v1/completions         Same, text completion objects.
//   POST /v1/embeddings          One 8-dimensional vector per input.
//   POST /v1/audio/transcriptions  multipart/form-data; echoes `model` and the
//                                file's size.
//   GET  /v1/models              The served model.
//   GET  /stats                  Counters (ServerStats) and the last request.
//   GET  /env                    The process environment.
// Completion text is "tok0 tok1 ...": one token per SSE chunk.
#ifndef MODELPLANE_TOOLS_FAKE_UPSTREAM_OPENAI_HANDLER_H_
#define MODELPLANE_TOOLS_FAKE_UPSTREAM_OPENAI_HANDLER_H_

#include <functional>
#include <string>

#include "tools/fake_upstream/http_server.h"

namespace modelplane::fake {

struct FakeModelOptions {
  std::string model = "fake-model";  // Answered when a request names none.
  int tokens = 16;                   // Tokens per completion by default.
  double tokens_per_second = 0;      // 0: as fast as the client reads.
  // Each streamed chunk carries "fake_sent_ns": CLOCK_MONOTONIC when it was
  // made, for benchmarks measuring per-chunk latency on the same machine.
  bool stamp_chunks = false;
  // Tests: a stream sends at most stream_gate() chunks so far (asked again
  // every millisecond while it holds one back; the server's loop thread);
  // null: no gate.
  std::function<int()> stream_gate;
};

class OpenAiHandler {
 public:
  // `stats` must outlive the handler; `is_ready` says whether /health is 200.
  OpenAiHandler(FakeModelOptions options, ServerStats* stats,
                std::function<bool()> is_ready);

  Response Handle(const Request& request);

 private:
  Response Health() const;
  Response Stats() const;
  Response Env() const;
  Response Models() const;
  Response Completion(const Request& request, bool chat);
  Response Embeddings(const Request& request);
  Response Transcription(const Request& request);
  void Remember(const Request& request);

  FakeModelOptions options_;
  ServerStats* stats_;
  std::function<bool()> is_ready_;
  uint64_t next_id_ = 0;
  std::string last_body_;  // Truncated; for tests of body rewriting.
  // The whole last body's size and FNV-1a hash: a large upload arrived
  // whole and unchanged.
  uint64_t last_body_bytes_ = 0;
  uint64_t last_body_fnv1a_ = 0;
  std::vector<std::pair<std::string, std::string>> last_headers_;
  std::string last_path_;
  std::string last_query_;  // Without the leading '?'.
};

}  // namespace modelplane::fake

#endif  // MODELPLANE_TOOLS_FAKE_UPSTREAM_OPENAI_HANDLER_H_
