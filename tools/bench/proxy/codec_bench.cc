// The proxy's per-request readers on their own (no sockets), each against
// its peer in the same run, reported as ratios:
//
//   - HTTP/1.1 heads: the codec as built (plain heads read in one pass,
//     proxy/http1/plain_head.h) against the same codec on http-parser alone;
//     a request the way wrk and curl send one, and a model's response head.
//   - Finding a JSON body's "model": JsonScanner::Feed (runs skipped eight
//     bytes at a time) against the same state machine byte by byte, and
//     against parsing the body whole with RapidJSON and with simdjson (what
//     a proxy that parses bodies pays), on a 16 KiB chat request.
//
//   bazel run -c opt //tools/bench/proxy:codec
//
// Google Benchmark flags (--benchmark_filter=...) are passed on.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/http1/codec.h"
#include "proxy/router/json_scanner.h"
#include "rapidjson/document.h"
#include "simdjson.h"

namespace modelplane::bench {
namespace {

using proxy::http1::Limits;
using proxy::http1::RequestHead;
using proxy::http1::RequestParser;
using proxy::http1::RequestVisitor;
using proxy::http1::ResponseHead;
using proxy::http1::ResponseParser;
using proxy::http1::ResponseVisitor;
using proxy::router::JsonScanner;

const char kRequest[] =
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "Authorization: Bearer sk-0123456789abcdef\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 79\r\n\r\n"
    R"({"model":"bench","messages":[{"role":"user","content":"hello"}],)"
    R"("max_tokens":4})";

const char kResponse[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json; charset=utf-8\r\n"
    "Server: llama.cpp\r\n"
    "Access-Control-Allow-Origin: \r\n"
    "Keep-Alive: timeout=5, max=100\r\n"
    "Content-Length: 2\r\n\r\n{}";

class Requests : public RequestVisitor {
 public:
  void OnRequestHead(RequestHead head) override {
    benchmark::DoNotOptimize(head.headers.data());
  }
  void OnRequestBody(absl::string_view) override {}
  void OnRequestEnd() override { parser->Resume(); }
  void OnRequestError(int, const std::string&) override { failed = true; }
  RequestParser* parser = nullptr;
  bool failed = false;
};

void RequestHeads(benchmark::State& state, bool plain) {
  Requests v;
  Limits limits;
  limits.plain_heads = plain;
  RequestParser p(&v, limits);
  v.parser = &p;
  absl::string_view in(kRequest, sizeof(kRequest) - 1);
  for (auto _ : state) {
    if (p.Feed(in) != in.size() || v.failed) {
      state.SkipWithError("the request was not read");
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * in.size());
}

class Responses : public ResponseVisitor {
 public:
  void OnResponseHead(ResponseHead head) override {
    benchmark::DoNotOptimize(head.headers.data());
  }
  void OnResponseBody(absl::string_view) override {}
  void OnResponseEnd() override { ended = true; }
  void OnResponseError(const std::string&) override {}
  bool ended = false;
};

void ResponseHeads(benchmark::State& state, bool plain) {
  absl::string_view in(kResponse, sizeof(kResponse) - 1);
  for (auto _ : state) {
    Responses v;  // A parser per response, as the upstream side has.
    ResponseParser p(&v, plain);
    p.Feed(in);
    if (!v.ended) {
      state.SkipWithError("the response was not read");
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * in.size());
}

// A chat request of about 16 KiB: a system prompt and turns with escapes,
// the model named after the messages (the scan has to walk them).
const std::string& ChatBody() {
  static const std::string body = [] {
    std::string b = R"({"messages":[)";
    const std::string text =
        "You are a careful assistant. Answer \\\"briefly\\\" and cite "
        "sources.\\nLine two: \\u00e9t\\u00e9, tabs\\tand more words to "
        "make a realistic prompt of some length. ";
    for (int turn = 0; b.size() < 16 << 10; ++turn) {
      absl::StrAppend(&b, turn == 0 ? "" : ",", R"({"role":")",
                      turn % 2 == 0 ? "user" : "assistant", R"(","content":")");
      for (int i = 0; i < 8; ++i) b += text;
      b += R"("})";
    }
    b += R"(],"model":"qwen2.5-coder-32b","stream":true,"max_tokens":512})";
    return b;
  }();
  return body;
}

void ScanFeed(benchmark::State& state) {
  const std::string& body = ChatBody();
  for (auto _ : state) {
    JsonScanner s;
    s.Feed(body);
    if (!s.model()) state.SkipWithError("no model");
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}

void ScanEachByte(benchmark::State& state) {
  const std::string& body = ChatBody();
  for (auto _ : state) {
    JsonScanner s;
    s.FeedEachByte(body);
    if (!s.model()) state.SkipWithError("no model");
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}

void ParseRapidJson(benchmark::State& state) {
  const std::string& body = ChatBody();
  for (auto _ : state) {
    rapidjson::Document d;
    d.Parse(body.data(), body.size());
    if (d.HasParseError() || !d["model"].IsString()) {
      state.SkipWithError("no model");
    }
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}

void ParseSimdjson(benchmark::State& state) {
  const std::string& body = ChatBody();
  simdjson::dom::parser parser;  // Kept: its buffers are reused, its best.
  simdjson::padded_string padded(body);
  for (auto _ : state) {
    simdjson::dom::element doc;
    std::string_view model;
    if (parser.parse(padded).get(doc) || doc["model"].get(model)) {
      state.SkipWithError("no model");
    }
    benchmark::DoNotOptimize(model.data());
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}

// Collects each benchmark's time per iteration for the ratios at the end.
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (!r.error_occurred) ns[r.benchmark_name()] = r.GetAdjustedRealTime();
    }
  }
  std::map<std::string, double> ns;
};

void Ratio(const Collector& c, const std::string& ours,
           const std::string& peer) {
  auto a = c.ns.find(ours);
  auto b = c.ns.find(peer);
  if (a == c.ns.end() || b == c.ns.end()) return;
  std::printf("%-18s %8.0f ns   %-26s %8.0f ns   speed %.2fx the peer's\n",
              ours.c_str(), a->second, peer.c_str(), b->second,
              b->second / a->second);
}

}  // namespace
}  // namespace modelplane::bench

int main(int argc, char** argv) {
  using namespace modelplane::bench;  // NOLINT: main only.
  benchmark::RegisterBenchmark("request_head/plain", RequestHeads, true);
  benchmark::RegisterBenchmark("request_head/http_parser", RequestHeads, false);
  benchmark::RegisterBenchmark("response_head/plain", ResponseHeads, true);
  benchmark::RegisterBenchmark("response_head/http_parser", ResponseHeads,
                               false);
  benchmark::RegisterBenchmark("json_model/scan", ScanFeed);
  benchmark::RegisterBenchmark("json_model/scan_each_byte", ScanEachByte);
  benchmark::RegisterBenchmark("json_model/rapidjson_parse", ParseRapidJson);
  benchmark::RegisterBenchmark("json_model/simdjson_parse", ParseSimdjson);
  benchmark::Initialize(&argc, argv);
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  std::printf("\nRatios (peer time / ours):\n");
  Ratio(collector, "request_head/plain", "request_head/http_parser");
  Ratio(collector, "response_head/plain", "response_head/http_parser");
  Ratio(collector, "json_model/scan", "json_model/scan_each_byte");
  Ratio(collector, "json_model/scan", "json_model/rapidjson_parse");
  Ratio(collector, "json_model/scan", "json_model/simdjson_parse");
  benchmark::Shutdown();
  return 0;
}
