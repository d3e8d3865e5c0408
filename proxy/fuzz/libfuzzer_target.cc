// A libFuzzer entry point over every reader of untrusted bytes in the proxy
// (coverage-guided, with clang: `make fuzz`, tools/fuzz.sh). The first byte
// picks the reader, the second how the rest is split into reads:
//
//   0 HTTP/1.1 request parser     1 JSON model scanner
//   2 multipart model scanner     3 HTTP/1.1 response parser
//   4 HTTP/2 server session (the client preface is prepended)
//
// Nothing may crash, leak or read out of bounds (ASan, UBSan); a request or
// stream that completes is answered, so the response paths run too. The same
// function runs under gcc in //proxy/fuzz:libfuzzer_target_test over its
// seeds, so the target keeps building and working between fuzzing runs.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "proxy/http1/codec.h"
#include "proxy/http2/server_session.h"
#include "proxy/router/json_scanner.h"
#include "proxy/router/multipart_scanner.h"

namespace modelplane::proxy {
namespace {

class NullRequestVisitor : public http1::RequestVisitor {
 public:
  void OnRequestHead(http1::RequestHead) override {}
  void OnRequestBody(absl::string_view) override {}
  void OnRequestEnd() override {}
  void OnRequestError(int, const std::string&) override {}
};

class NullResponseVisitor : public http1::ResponseVisitor {
 public:
  void OnResponseHead(http1::ResponseHead) override {}
  void OnResponseBody(absl::string_view) override {}
  void OnResponseEnd() override {}
  void OnResponseError(const std::string&) override {}
};

// Answers every complete request (and every refused one) at once.
class AnsweringVisitor : public http2::StreamVisitor {
 public:
  http2::ServerSession* session = nullptr;
  void OnStreamHead(int32_t, http1::RequestHead) override {}
  void OnStreamBody(int32_t, absl::string_view) override {}
  void OnStreamEnd(int32_t id) override {
    session->SubmitHead(id, 200, {{"Content-Type", "text/event-stream"}},
                        std::nullopt, false);
    session->SubmitData(id, "data: x\n\n");
    session->SubmitEnd(id);
  }
  void OnStreamError(int32_t id, int status, const std::string&) override {
    session->SubmitHead(id, status, {}, 0, true);
  }
  void OnStreamClose(int32_t, uint32_t) override {}
  void OnStreamWritable(int32_t) override {}
};

// Feeds `input` in pieces of 1 + (split % 64) bytes (split 0: whole).
template <typename FeedFn>
void InPieces(absl::string_view input, uint8_t split, FeedFn feed) {
  size_t step = split == 0 ? input.size() : 1 + split % 64;
  for (size_t i = 0; i < input.size(); i += step) {
    if (!feed(input.substr(i, step))) return;
  }
}

}  // namespace
}  // namespace modelplane::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modelplane::proxy;  // NOLINT: a fuzz entry point.
  if (size < 2) return 0;
  uint8_t target = data[0] % 5, split = data[1];
  absl::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  switch (target) {
    case 0: {
      NullRequestVisitor v;
      http1::RequestParser p(&v, http1::Limits{4096, 1 << 16});
      InPieces(input, split, [&](absl::string_view piece) {
        while (!piece.empty() && !p.failed()) {
          size_t used = p.Feed(piece);
          if (p.paused()) p.Resume();  // The next pipelined request.
          if (used == 0 && !p.paused()) break;
          piece.remove_prefix(used);
        }
        return !p.failed();
      });
      break;
    }
    case 1: {
      router::JsonScanner s;
      InPieces(input, split, [&](absl::string_view piece) {
        s.Feed(piece);
        return true;
      });
      s.Finish();
      break;
    }
    case 2: {
      router::MultipartScanner s("fuzzboundary");
      InPieces(input, split, [&](absl::string_view piece) {
        s.Feed(piece);
        return true;
      });
      s.Finish();
      break;
    }
    case 3: {
      NullResponseVisitor v;
      http1::ResponseParser p(&v);
      p.ExpectResponse(split & 1);
      InPieces(input, split, [&](absl::string_view piece) {
        p.Feed(piece);
        return !p.failed();
      });
      p.FeedEof();
      break;
    }
    default: {
      AnsweringVisitor v;
      http2::ServerSession s(&v, http2::ServerSession::Options{});
      v.session = &s;
      std::string out;
      s.Feed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      InPieces(input, split, [&](absl::string_view piece) {
        bool ok = s.Feed(piece);
        out.clear();
        s.Produce(&out, 1 << 20);
        return ok;
      });
      break;
    }
  }
  return 0;
}
