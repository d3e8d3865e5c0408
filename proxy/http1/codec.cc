// codec.h's shared parts: the header field rules, lookups, reason
// phrases, and the encoders (heads, chunks). The parsers are in
// request_parser.cc and response_parser.cc.
#include "proxy/http1/codec.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/http1/plain_head.h"

namespace modelplane::proxy::http1 {

bool FieldGuard::ValuePiece(bool continued, const char* at, size_t len) {
  if (continued && at != value_end_ && !(value_ended_feed_ && at == begin_)) {
    return false;
  }
  value_end_ = at + len;
  value_ended_feed_ = value_end_ == end_;
  return true;
}

std::optional<std::string> FieldGuard::FirstInvalid(Headers* headers) {
  for (auto& [name, value] : *headers) {
    // http-parser drops only the leading spaces and tabs.
    size_t n = value.size();
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) --n;
    value.resize(n);
    if (!IsFieldName(name) || !IsFieldValue(value)) {
      return absl::CHexEscape(absl::string_view(name).substr(0, 64));
    }
  }
  return std::nullopt;
}

const std::string* FindHeader(const Headers& headers, absl::string_view name) {
  for (const auto& [k, v] : headers) {
    if (EqualsNoCase(k, name)) return &v;
  }
  return nullptr;
}

bool HasToken(const Headers& headers, absl::string_view name,
              absl::string_view token) {
  const std::string* v = FindHeader(headers, name);
  if (v == nullptr) return false;
  for (absl::string_view t : absl::StrSplit(*v, ',')) {
    if (EqualsNoCase(absl::StripAsciiWhitespace(t), token)) return true;
  }
  return false;
}

bool IsHopByHop(absl::string_view h) {
  // By length first: most names (content-type, host, ...) match none, and
  // it is asked for every header of every request and response.
  switch (h.size()) {
    case 2:
      return EqualsNoCase(h, "te");
    case 7:
      return EqualsNoCase(h, "trailer") || EqualsNoCase(h, "upgrade");
    case 10:
      return EqualsNoCase(h, "connection") || EqualsNoCase(h, "keep-alive");
    case 14:
      return EqualsNoCase(h, "content-length") ||
             EqualsNoCase(h, "http2-settings");
    case 16:
      return EqualsNoCase(h, "proxy-connection");
    case 17:
      return EqualsNoCase(h, "transfer-encoding");
    // Credentials for this proxy, and its challenge (RFC 9110 11.7): never
    // passed on (modelproxy takes none: its keys are Authorization's).
    case 18:
      return EqualsNoCase(h, "proxy-authenticate");
    case 19:
      return EqualsNoCase(h, "proxy-authorization");
    default:
      return false;
  }
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// --- Encoders ---

namespace {

// "name: value\r\n". Plain appends: absl::StrAppend here zero-fills what
// it then overwrites (Debian's Abseil has no uninitialized resize). A line
// that fits 256 bytes (nearly every one) is put together on the stack and
// appended once: each append checks the capacity and ends the string anew,
// which for a short header costs more than its bytes.
void AppendHeader(std::string* out, absl::string_view k, absl::string_view v) {
  size_t n = k.size() + v.size() + 4;
  if (n <= 256) {
    char line[256];
    memcpy(line, k.data(), k.size());
    line[k.size()] = ':';
    line[k.size() + 1] = ' ';
    memcpy(line + k.size() + 2, v.data(), v.size());
    line[n - 2] = '\r';
    line[n - 1] = '\n';
    out->append(line, n);
    return;
  }
  out->append(k.data(), k.size());
  out->append(": ", 2);
  out->append(v.data(), v.size());
  out->append("\r\n", 2);
}

// The header names a message's Connection header lists (RFC 9110 7.6.1:
// hop-by-hop too, a proxy drops them), but the usual keep-alive, close and
// upgrade, which are dropped anyway. Empty for nearly every message.
std::vector<absl::string_view> ConnectionOptions(const Headers& headers) {
  std::vector<absl::string_view> names;
  for (const auto& [k, v] : headers) {
    if (!EqualsNoCase(k, "connection")) continue;
    // Split by hand: absl::StrSplit's machinery costs more than the rest of
    // a response head, and nearly every upstream sends this header.
    absl::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      absl::string_view t = absl::StripAsciiWhitespace(rest.substr(0, comma));
      rest = comma == absl::string_view::npos ? absl::string_view()
                                              : rest.substr(comma + 1);
      if (t.empty() || EqualsNoCase(t, "keep-alive") ||
          EqualsNoCase(t, "close") || EqualsNoCase(t, "upgrade")) {
        continue;
      }
      names.push_back(t);
    }
  }
  return names;
}

bool Listed(const std::vector<absl::string_view>& names, absl::string_view k) {
  for (absl::string_view n : names) {
    if (EqualsNoCase(n, k)) return true;
  }
  return false;
}

void AppendHeaders(std::string* out, const Headers& headers) {
  std::vector<absl::string_view> named = ConnectionOptions(headers);
  for (const auto& [k, v] : headers) {
    if (IsHopByHop(k) || Listed(named, k)) continue;
    AppendHeader(out, k, v);
  }
}

void AppendFraming(std::string* out, Framing framing, uint64_t length) {
  if (framing == Framing::kContentLength) {
    // In one append (StrAppend zero-fills, then writes).
    char line[48] = "Content-Length: ";
    constexpr size_t kName = sizeof("Content-Length: ") - 1;
    char digits[20];
    size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + length % 10);
      length /= 10;
    } while (length != 0);
    for (size_t i = 0; i < n; ++i) line[kName + i] = digits[n - 1 - i];
    line[kName + n] = '\r';
    line[kName + n + 1] = '\n';
    out->append(line, kName + n + 2);
  } else if (framing == Framing::kChunked) {
    out->append("Transfer-Encoding: chunked\r\n");
  }
}

}  // namespace

void AppendResponseHead(std::string* out, int status, absl::string_view reason,
                        const Headers& headers, Framing framing,
                        uint64_t content_length, bool keep_alive) {
  size_t size = 96 + reason.size();  // Status line, framing, Connection.
  for (const auto& [k, v] : headers) size += k.size() + v.size() + 4;
  out->reserve(out->size() + size);
  if (status >= 100 && status <= 999) {
    char line[] = "HTTP/1.1 000 ";
    line[9] = static_cast<char>('0' + status / 100);
    line[10] = static_cast<char>('0' + status / 10 % 10);
    line[11] = static_cast<char>('0' + status % 10);
    out->append(line, sizeof(line) - 1);
  } else {
    absl::StrAppend(out, "HTTP/1.1 ", status, " ");
  }
  if (reason.empty()) reason = ReasonPhrase(status);
  out->append(reason.data(), reason.size());
  out->append("\r\n", 2);
  AppendHeaders(out, headers);
  if (!IsBodilessStatus(status)) AppendFraming(out, framing, content_length);
  bool close = !keep_alive || framing == Framing::kUntilClose;
  if (close) {
    out->append("Connection: close\r\n\r\n");
  } else {
    out->append("Connection: keep-alive\r\n\r\n");
  }
}

std::string EncodeResponseHead(int status, absl::string_view reason,
                               const Headers& headers, Framing framing,
                               uint64_t content_length, bool keep_alive) {
  std::string out;
  AppendResponseHead(&out, status, reason, headers, framing, content_length,
                     keep_alive);
  return out;
}

void AppendRequestHead(
    std::string* out, absl::string_view method, absl::string_view target,
    const Headers& headers, std::initializer_list<absl::string_view> skip,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        extra,
    Framing framing, uint64_t content_length, absl::string_view upgrade) {
  size_t size = method.size() + target.size() + 64 + upgrade.size();
  for (const auto& [k, v] : headers) size += k.size() + v.size() + 4;
  for (const auto& [k, v] : extra) size += k.size() + v.size() + 4;
  out->reserve(out->size() + size);
  out->append(method.data(), method.size());
  out->push_back(' ');
  out->append(target.data(), target.size());
  out->append(" HTTP/1.1\r\n", 11);
  std::vector<absl::string_view> named = ConnectionOptions(headers);
  for (const auto& [k, v] : headers) {
    if (IsHopByHop(k) || Listed(named, k)) continue;
    bool skipped = false;
    for (absl::string_view name : skip) {
      if (EqualsNoCase(k, name)) {
        skipped = true;
        break;
      }
    }
    if (!skipped) AppendHeader(out, k, v);
  }
  for (const auto& [k, v] : extra) AppendHeader(out, k, v);
  AppendFraming(out, framing, content_length);
  if (upgrade.empty()) {
    out->append("Connection: keep-alive\r\n\r\n");
    return;
  }
  out->append("Connection: Upgrade\r\n");
  AppendHeader(out, "Upgrade", upgrade);
  out->append("\r\n", 2);
}

void AppendSwitchingHead(std::string* out, const Headers& headers) {
  out->append("HTTP/1.1 101 Switching Protocols\r\n");
  for (const auto& [k, v] : headers) AppendHeader(out, k, v);
  out->append("\r\n", 2);
}

std::string EncodeRequestHead(absl::string_view method,
                              absl::string_view target, const Headers& headers,
                              Framing framing, uint64_t content_length) {
  std::string out;
  AppendRequestHead(&out, method, target, headers, {}, {}, framing,
                    content_length);
  return out;
}

void AppendChunk(std::string* out, absl::string_view data) {
  if (data.empty()) return;
  absl::StrAppend(out, absl::Hex(data.size()), "\r\n", data, "\r\n");
}

std::string EncodeChunk(absl::string_view data) {
  std::string out;
  AppendChunk(&out, data);
  return out;
}

}  // namespace modelplane::proxy::http1
