// What the two HTTP/1.1 parsers share (request_parser.cc,
// response_parser.cc). Private to proxy/http1.
#ifndef MODELPLANE_PROXY_HTTP1_PARSE_UTIL_H_
#define MODELPLANE_PROXY_HTTP1_PARSE_UTIL_H_

#include <http_parser.h>

#include "proxy/http1/codec.h"

namespace modelplane::proxy::http1::internal {

template <typename T>
inline T* From(http_parser* p) {
  return static_cast<T*>(p->data);
}

inline void AppendHeaderPart(Headers* headers, bool* in_value, bool value,
                             const char* at, size_t len) {
  if (!value) {
    if (*in_value || headers->empty()) headers->emplace_back();
    *in_value = false;
    headers->back().first.append(at, len);
  } else {
    *in_value = true;
    headers->back().second.append(at, len);
  }
}

}  // namespace modelplane::proxy::http1::internal

#endif  // MODELPLANE_PROXY_HTTP1_PARSE_UTIL_H_
