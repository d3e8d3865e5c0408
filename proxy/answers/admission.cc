#include "proxy/answers/admission.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {
namespace {

// "127.0.0.1", "[::1]", "localhost" (any port): a Host a DNS-rebinding page
// cannot send (its Host is its own domain name).
bool IsAddressOrLocalhost(absl::string_view host) {
  if (absl::ConsumePrefix(&host, "[")) return true;  // An IPv6 literal.
  host = host.substr(0, host.rfind(':'));
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

}  // namespace

bool Authorized(const absl::flat_hash_set<std::string>& keys,
                http1::Headers* headers) {
  if (keys.empty()) return true;
  std::vector<std::string> presented;
  if (const std::string* a = http1::FindHeader(*headers, "authorization")) {
    // The scheme in any case, then one or more spaces (RFC 9110 11.1).
    absl::string_view v = *a;
    size_t space = v.find(' ');
    absl::string_view scheme = v.substr(0, space);
    absl::string_view credentials =
        space == absl::string_view::npos
            ? absl::string_view()
            : absl::StripLeadingAsciiWhitespace(v.substr(space));
    if (absl::EqualsIgnoreCase(scheme, "bearer")) {
      presented.emplace_back(credentials);
    }
    std::string decoded;
    if (absl::EqualsIgnoreCase(scheme, "basic") &&
        absl::Base64Unescape(credentials, &decoded)) {
      presented.push_back(decoded.substr(decoded.find(':') + 1));
    }
  }
  if (const std::string* k = http1::FindHeader(*headers, "x-api-key")) {
    presented.push_back(*k);
  }
  for (const std::string& key : presented) {
    if (keys.contains(Sha256Hex(key))) {
      headers->erase(std::remove_if(headers->begin(), headers->end(),
                                    [](const auto& h) {
                                      return absl::EqualsIgnoreCase(
                                                 h.first, "authorization") ||
                                             absl::EqualsIgnoreCase(
                                                 h.first, "x-api-key");
                                    }),
                     headers->end());
      return true;
    }
  }
  return false;
}

absl::Status MayChangeState(const http1::Headers& headers,
                            bool loopback_listener, bool keys_required) {
  const std::string* host = http1::FindHeader(headers, "host");
  const std::string* origin = http1::FindHeader(headers, "origin");
  // A page on another site (a plain HTML form needs no CORS preflight)
  // must not stop models: its Origin names another host than the request.
  if (origin != nullptr && host != nullptr) {
    absl::string_view o = *origin;
    if (!absl::ConsumePrefix(&o, "http://")) {
      absl::ConsumePrefix(&o, "https://");
    }
    if (!absl::EqualsIgnoreCase(o, *host)) {
      return absl::PermissionDeniedError(
          absl::StrCat("a request from another site (Origin ", *origin,
                       ", Host ", *host, ") may not change what runs"));
    }
  }
  // DNS rebinding: a page whose name resolves to 127.0.0.1 is same-origin
  // with this proxy, but its Host is its own name. A proxy on a loopback
  // address with no apiKeys takes changes only for an address or localhost.
  if (loopback_listener && !keys_required && host != nullptr &&
      !IsAddressOrLocalhost(*host)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "Host ", *host,
        " names neither an address nor localhost, and the config sets no "
        "apiKeys: refused (DNS rebinding); send it to the proxy's address, "
        "or set apiKeys"));
  }
  return absl::OkStatus();
}

bool MayChange(const AnswerRequest& q, Responder* r) {
  const absl::flat_hash_set<std::string>* keys = q.snapshot.api_keys();
  absl::Status may = MayChangeState(q.head.headers, q.loopback_listener,
                                    keys != nullptr && !keys->empty());
  if (!may.ok()) r->RespondError(403, std::string(may.message()));
  return may.ok();
}

}  // namespace modelplane::proxy::answers
