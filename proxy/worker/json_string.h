// A string as a JSON string literal, quotes included, for the bodies the
// proxy writes itself.
#ifndef MODELPLANE_PROXY_WORKER_JSON_STRING_H_
#define MODELPLANE_PROXY_WORKER_JSON_STRING_H_

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

#include "absl/strings/string_view.h"

namespace modelplane::proxy {

inline std::string JsonString(absl::string_view s) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return out.GetString();
}

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_JSON_STRING_H_
