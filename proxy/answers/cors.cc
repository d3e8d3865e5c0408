#include "proxy/answers/cors.h"

#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

http1::Headers PreflightHeaders(const http1::Headers& request, bool origin) {
  std::string allow;
  if (const std::string* asked =
          http1::FindHeader(request, "access-control-request-headers")) {
    for (char ch : *asked) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(ch)) ||
          std::strchr("!#$%&'*+-.^_`|~, ", ch) != nullptr) {
        allow.push_back(ch);
      }
    }
  }
  if (absl::StripAsciiWhitespace(allow).empty()) {
    allow = "Content-Type, Authorization, Accept, X-Requested-With, X-Api-Key";
  }
  http1::Headers headers = {{"Access-Control-Allow-Methods",
                             "GET, POST, PUT, PATCH, DELETE, OPTIONS"},
                            {"Access-Control-Allow-Headers", allow},
                            {"Access-Control-Max-Age", "86400"}};
  if (!origin) headers.emplace_back("Access-Control-Allow-Origin", "*");
  return headers;
}

void Preflight(const AnswerRequest& q, Responder* r) {
  r->Respond(204, "", "", PreflightHeaders(q.head.headers, q.has_origin));
}

}  // namespace modelplane::proxy::answers
