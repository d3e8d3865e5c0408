#include "proxy/router/multipart_scanner.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace modelplane::proxy::router {
// The `name` parameter of a part's Content-Disposition header.
absl::StatusOr<std::string> MultipartScanner::PartName(
    absl::string_view headers) {
  std::optional<std::string> name;
  bool disposition = false;
  for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos ||
        !absl::EqualsIgnoreCase(
            absl::StripAsciiWhitespace(line.substr(0, colon)),
            "content-disposition")) {
      continue;
    }
    // Servers differ on which of two they read.
    if (disposition) {
      return absl::InvalidArgumentError(
          "a part has two Content-Disposition headers");
    }
    disposition = true;
    for (absl::string_view param :
         absl::StrSplit(line.substr(colon + 1), ';')) {
      // Parameter names are case-insensitive (RFC 7578, 4.2; servers such
      // as python-multipart read `NAME = "model"` as the model field).
      size_t eq = param.find('=');
      if (eq == absl::string_view::npos) continue;
      absl::string_view key = absl::StripAsciiWhitespace(param.substr(0, eq));
      // name* (RFC 5987 encoding): RFC 7578 4.2 rules it out for names,
      // and a server that decodes it reads a name this scanner would not.
      if (absl::EqualsIgnoreCase(key, "name*")) {
        return absl::InvalidArgumentError(
            "a part is named with name* (RFC 7578 allows only name)");
      }
      if (!absl::EqualsIgnoreCase(key, "name")) continue;
      if (name) {
        return absl::InvalidArgumentError("a part names itself twice");
      }
      param = absl::StripAsciiWhitespace(param.substr(eq + 1));
      if (absl::ConsumePrefix(&param, "\"")) absl::ConsumeSuffix(&param, "\"");
      name = std::string(param);
    }
  }
  return name.value_or("");
}

std::optional<std::string> MultipartScanner::BoundaryFrom(
    absl::string_view content_type) {
  // Most bodies are JSON: refused before anything is split or allocated,
  // and "application/json" by its length alone.
  if (content_type.size() < sizeof("multipart/form-data") - 1 ||
      !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(content_type.substr(
                                  0, content_type.find(';'))),
                              "multipart/form-data")) {
    return std::nullopt;
  }
  std::vector<absl::string_view> params = absl::StrSplit(content_type, ';');
  if (params.empty() ||
      !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(params[0]),
                              "multipart/form-data")) {
    return std::nullopt;
  }
  std::optional<std::string> boundary;
  for (size_t i = 1; i < params.size(); ++i) {
    absl::string_view p = absl::StripAsciiWhitespace(params[i]);
    size_t eq = p.find('=');
    if (eq == absl::string_view::npos ||
        !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(p.substr(0, eq)),
                                "boundary")) {
      continue;
    }
    // Two boundaries: servers differ on which they split by (the proxy's
    // model field and the upstream's would not be the same part).
    if (boundary) return std::string();
    p = absl::StripAsciiWhitespace(p.substr(eq + 1));
    if (absl::ConsumePrefix(&p, "\"")) absl::ConsumeSuffix(&p, "\"");
    if (p.empty() || p.size() > 70) return std::string();  // RFC 2046.
    boundary = std::string(p);
  }
  return boundary.value_or("");
}

MultipartScanner::MultipartScanner(const std::string& boundary)
    : delimiter_("\r\n--" + boundary), buf_("\r\n") {}
// The first delimiter has no CRLF before it: the one put in buf_ makes every
// delimiter look the same.

void MultipartScanner::Fail(const std::string& what) {
  if (error_) return;
  error_ = true;
  error_message_ = "invalid multipart body: " + what;
}

void MultipartScanner::Feed(absl::string_view data) {
  if (done()) return;
  buf_.append(data.data(), data.size());
  while (!done()) {
    if (state_ == State::kData) {
      size_t at = buf_.find(delimiter_);
      size_t usable = at != std::string::npos ? at
                      : buf_.size() >= delimiter_.size()
                          ? buf_.size() - delimiter_.size() + 1
                          : 0;
      if (capturing_) {
        value_.append(buf_, 0, usable);
        if (value_.size() > kMaxModelBytes)
          return Fail("the model field is too long");
      }
      if (at == std::string::npos) {
        buf_.erase(0, usable);
        return;  // Need more input.
      }
      if (capturing_) {
        // A second one: the upstream may read either.
        if (model_) return Fail("the form has more than one model field");
        model_ = value_;
        capturing_ = false;
      }
      buf_.erase(0, at + delimiter_.size());
      state_ = State::kAfterDelimiter;
    } else if (state_ == State::kAfterDelimiter) {
      if (buf_.size() < 2) return;
      if (buf_.compare(0, 2, "--") == 0) {
        closed_ = true;
        return;
      }
      if (buf_.compare(0, 2, "\r\n") != 0) return Fail("bad delimiter line");
      buf_.erase(0, 2);
      state_ = State::kHeaders;
    } else {  // kHeaders
      size_t end = absl::StartsWith(buf_, "\r\n") ? 0 : buf_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (buf_.size() > kMaxPartHeaderBytes)
          return Fail("part headers too long");
        return;
      }
      absl::StatusOr<std::string> name =
          PartName(absl::string_view(buf_).substr(0, end));
      if (!name.ok()) return Fail(std::string(name.status().message()));
      capturing_ = *name == "model";
      value_.clear();
      buf_.erase(0, end == 0 ? 2 : end + 4);
      state_ = State::kData;
    }
  }
}

void MultipartScanner::Finish() {
  if (!done()) Fail("the body ends before its closing delimiter");
}

}  // namespace modelplane::proxy::router
