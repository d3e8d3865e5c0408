// Every reader of untrusted bytes in the proxy, fed mutated and re-split
// input: it must never crash, and a valid input must give the same answer
// however it is split into reads. Seeded (kSeed), so failures reproduce; run
// it under --config=asan to catch memory errors too.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "proxy/fuzz/mutate.h"
#include "proxy/http1/codec.h"
#include "proxy/router/json_scanner.h"
#include "proxy/router/multipart_scanner.h"

namespace modelplane::proxy {
namespace {

constexpr uint32_t kSeed = 20261126;
constexpr int kRounds = 3000;

using fuzz::Mutate;
using fuzz::Pieces;

const std::vector<std::string>& JsonSeeds() {
  static const std::vector<std::string> seeds = {
      R"({"model":"qwen","messages":[{"role":"user","content":"hi"}]})",
      R"({"messages":[{"content":"a \"model\": \"x\" inside"}],"stream":true,)"
      R"("model":"llama\u0041"})",
      R"({"a":{"model":"nested"},"b":[1,2.5e3,-0,null,true,false],)"
      R"("model":"top","stream":false})",
      R"(  {"model" : "spaced"  }  )",
      // A long prompt: the runs Feed skips without the state machine.
      R"({"messages":[{"role":"system","content":"You are a careful )"
      R"(assistant. Answer in \"plain\" words,\nno lists; {not: [json]}."},)"
      R"({"role":"user","content":"Summarise: the quick brown fox jumps )"
      R"(over the lazy dog \u00e9\t(again) and again and again"}],)"
      R"("temperature":0.7,"model":"long","stream":true})",
  };
  return seeds;
}

TEST(InputFuzzTest, JsonScannerSplitInvariantAndNeverCrashes) {
  std::mt19937 rng(kSeed);
  for (int round = 0; round < kRounds; ++round) {
    const std::string& seed = JsonSeeds()[round % JsonSeeds().size()];
    std::string input = round % 3 == 0 ? seed : Mutate(seed, rng);
    router::JsonScanner whole;
    whole.Feed(input);
    whole.Finish();
    router::JsonScanner split;
    for (const std::string& p : Pieces(input, rng)) split.Feed(p);
    split.Finish();
    ASSERT_EQ(whole.model(), split.model()) << input;
    ASSERT_EQ(whole.error(), split.error()) << input;
    ASSERT_EQ(whole.stream(), split.stream()) << input;
    // Feed's fast paths skip runs of bytes: the same answer, and the same
    // error at the same byte, as the state machine alone.
    router::JsonScanner reference;
    reference.FeedEachByte(input);
    reference.Finish();
    ASSERT_EQ(whole.model(), reference.model()) << input;
    ASSERT_EQ(whole.stream(), reference.stream()) << input;
    ASSERT_EQ(whole.error_message(), reference.error_message()) << input;
    if (round % 3 == 0) {
      ASSERT_TRUE(whole.model().has_value()) << input;
    }
  }
}

TEST(InputFuzzTest, MultipartScannerSplitInvariantAndNeverCrashes) {
  std::mt19937 rng(kSeed + 1);
  const std::string boundary = "----b0undary";
  const std::string seed = absl::StrCat(
      "--", boundary,
      "\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n",
      std::string(300, '\x01'), "\r\n--", boundary,
      "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--",
      boundary, "--\r\n");
  for (int round = 0; round < kRounds; ++round) {
    std::string input = round % 3 == 0 ? seed : Mutate(seed, rng);
    router::MultipartScanner whole(boundary);
    whole.Feed(input);
    whole.Finish();
    router::MultipartScanner split(boundary);
    for (const std::string& p : Pieces(input, rng)) split.Feed(p);
    split.Finish();
    ASSERT_EQ(whole.model(), split.model()) << round;
    ASSERT_EQ(whole.error(), split.error()) << round;
    if (round % 3 == 0) {
      ASSERT_EQ(whole.model(), "whisper");
    }
  }
}

class Recorder : public http1::RequestVisitor {
 public:
  explicit Recorder(http1::RequestParser** parser) : parser_(parser) {}
  void OnRequestHead(http1::RequestHead head) override {
    absl::StrAppend(&log, "H ", head.method, " ", head.target, " ",
                    head.headers.size(), "\n");
  }
  void OnRequestBody(absl::string_view d) override {
    absl::StrAppend(&log, "B ", d.size(), "\n");
    body.append(d.data(), d.size());
  }
  void OnRequestEnd() override {
    absl::StrAppend(&log, "E ", body.size(), "\n");
    body.clear();
    (*parser_)->Resume();  // Answered at once, as a local answer is.
  }
  void OnRequestError(int status, const std::string& message) override {
    absl::StrAppend(&log, "X ", status, " ", message, "\n");
  }
  std::string log;
  std::string body;

 private:
  http1::RequestParser** parser_;
};

// The events, with body pieces merged (their sizes depend on the split).
std::string Events(const std::string& input, std::mt19937* rng) {
  http1::RequestParser* parser = nullptr;
  Recorder r(&parser);
  http1::Limits limits;
  limits.max_header_bytes = 4096;
  limits.max_body_bytes = 1 << 16;
  http1::RequestParser p(&r, limits);
  parser = &p;
  std::vector<std::string> pieces =
      rng != nullptr ? Pieces(input, *rng) : std::vector<std::string>{input};
  std::string pending;
  for (const std::string& piece : pieces) {
    pending += piece;
    while (!pending.empty() && !p.failed()) {
      size_t used = p.Feed(pending);
      pending.erase(0, used);
      if (used == 0) break;
    }
  }
  std::string merged;
  for (absl::string_view line : absl::StrSplit(r.log, '\n')) {
    if (absl::StartsWith(line, "B ")) continue;
    absl::StrAppend(&merged, line, "\n");
  }
  return merged;
}

TEST(InputFuzzTest, RequestParserSplitInvariantAndNeverCrashes) {
  std::mt19937 rng(kSeed + 2);
  const std::string seed =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n"
      "\r\n{\"model\":\"qwen\"}"
      "POST /v1/embeddings HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
      "\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
      "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  for (int round = 0; round < kRounds; ++round) {
    std::string input = round % 3 == 0 ? seed : Mutate(seed, rng);
    std::string whole = Events(input, nullptr);
    std::string split = Events(input, &rng);
    ASSERT_EQ(whole, split) << absl::CEscape(input);
    if (round % 3 == 0) {
      ASSERT_EQ(whole,
                "H POST /v1/chat/completions 2\nE 16\n"
                "H POST /v1/embeddings 2\nE 5\nH GET /health 1\nE 0\n\n");
    }
  }
}

}  // namespace
}  // namespace modelplane::proxy
