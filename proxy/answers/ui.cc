// GET /ui/...: the web UI's files, built into the binary (//ui, compressed
// at build time by tools/embed). Brotli or gzip by the request's
// Accept-Encoding, a strong ETag per encoding (If-None-Match: 304), and a
// Content-Security-Policy that lets the page reach nothing but this proxy.
// The files hold no data (every model, log and request comes from the API,
// which needs the key): they are served without one, and the page asks for
// the key when the API answers 401 (docs/ui.md).
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/answers/answer.h"
#include "ui/assets.h"

namespace modelplane::proxy::answers {
namespace {

// Nothing from elsewhere: scripts, styles, images and connections are the
// proxy's own; no inline script or style; not framed.
constexpr char kCsp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

// Whether `accept` (an Accept-Encoding value) takes `coding` (q > 0).
bool Accepts(absl::string_view accept, absl::string_view coding) {
  for (absl::string_view part : absl::StrSplit(accept, ',')) {
    std::vector<absl::string_view> params = absl::StrSplit(part, ';');
    absl::string_view name = absl::StripAsciiWhitespace(params[0]);
    if (!absl::EqualsIgnoreCase(name, coding)) continue;
    for (size_t i = 1; i < params.size(); ++i) {
      absl::string_view p = absl::StripAsciiWhitespace(params[i]);
      if (absl::ConsumePrefix(&p, "q=")) {
        double q = 1;
        if (absl::SimpleAtod(p, &q) && q <= 0) return false;
      }
    }
    return true;
  }
  return false;
}

// Whether If-None-Match `inm` names `etag` (or is "*"); weak forms match
// too (RFC 9110's weak comparison for If-None-Match).
bool Matches(absl::string_view inm, absl::string_view etag) {
  for (absl::string_view t : absl::StrSplit(inm, ',')) {
    t = absl::StripAsciiWhitespace(t);
    absl::ConsumePrefix(&t, "W/");
    if (t == "*" || t == etag) return true;
  }
  return false;
}

}  // namespace

void Ui(const AnswerRequest& q, Responder* r) {
  absl::string_view target = q.head.target;
  absl::string_view path = target.substr(0, target.find('?'));
  if (path == "/" || path == "/ui") {
    return r->Respond(302, "text/plain", "", {{"Location", "/ui/"}});
  }
  if (path == "/favicon.ico") path = "/ui/favicon.svg";
  // The page's own routes (/ui/models, /ui/activity: a name with no
  // extension) are the page, as llama-swap's single-page app answers them.
  absl::string_view name = path.substr(path.rfind('/') + 1);
  if (path == "/ui/" || name.find('.') == absl::string_view::npos) {
    path = "/ui/index.html";
  }
  const EmbeddedFile* f = ui::FindFile(path);
  if (f == nullptr) {
    return r->RespondError(404, absl::StrCat("no such file: ", path));
  }
  const std::string* ae = http1::FindHeader(q.head.headers, "accept-encoding");
  absl::string_view body = f->identity;
  const char* coding = nullptr;
  const char* suffix = "";
  if (ae != nullptr && Accepts(*ae, "br") && !f->brotli.empty()) {
    body = f->brotli;
    coding = "br";
    suffix = "-br";
  } else if (ae != nullptr && Accepts(*ae, "gzip") && !f->gzip.empty()) {
    body = f->gzip;
    coding = "gzip";
    suffix = "-gz";
  }
  // One strong ETag per representation: the identity's hash, with the
  // coding added inside the quotes.
  absl::string_view base = f->etag.substr(1, f->etag.size() - 2);
  std::string etag = absl::StrCat("\"", base, suffix, "\"");
  http1::Headers headers = {
      {"ETag", etag},
      {"Cache-Control", "no-cache"},
      {"Vary", "Accept-Encoding"},
      {"Content-Security-Policy", kCsp},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
  };
  const std::string* inm = http1::FindHeader(q.head.headers, "if-none-match");
  if (inm != nullptr && Matches(*inm, etag)) {
    return r->Respond(304, "", "", headers);
  }
  if (coding != nullptr) headers.emplace_back("Content-Encoding", coding);
  r->Respond(200, std::string(f->content_type), std::string(body), headers);
}

}  // namespace modelplane::proxy::answers
