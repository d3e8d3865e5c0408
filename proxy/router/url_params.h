// Query strings and urlencoded forms (k=v&k=v): what the proxy reads from
// them (`?model=`, a form's model field) and rewrites (a peer's or a
// selector's model name).
#ifndef MODELPLANE_PROXY_ROUTER_URL_PARAMS_H_
#define MODELPLANE_PROXY_ROUTER_URL_PARAMS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

// %XX decoded (a malformed escape is kept as written); with `plus`, '+' is
// a space (form encoding, as in a query).
std::string PercentDecode(absl::string_view s, bool plus);
// All but RFC 3986's unreserved characters percent-encoded.
std::string PercentEncode(absl::string_view s);
// The query parameter `name` of a request target, decoded, or "".
std::string QueryParam(absl::string_view target, absl::string_view name);
// How many times `name` appears in the query of `target` (a client that
// names the model twice is refused: the upstream may read either).
int QueryParamCount(absl::string_view target, absl::string_view name);
// `pairs` (a query, or a urlencoded body) with the first `name`'s value made
// `value`; as it was when there is none.
std::string ReplaceParam(absl::string_view pairs, absl::string_view name,
                         absl::string_view value);

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_URL_PARAMS_H_
