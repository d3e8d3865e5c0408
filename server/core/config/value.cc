#include "server/core/config/value.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

namespace modelplane::config {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void Write(const Value& v, Writer& w) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      w.Null();
      break;
    case Value::Kind::kBool:
      w.Bool(v.AsBool());
      break;
    case Value::Kind::kInt:
      w.Int64(v.AsInt());
      break;
    case Value::Kind::kDouble:
      if (std::isfinite(v.AsDouble())) {
        w.Double(v.AsDouble());
      } else {
        w.Null();
      }
      break;
    case Value::Kind::kString:
      w.String(v.AsString().data(),
               static_cast<rapidjson::SizeType>(v.AsString().size()));
      break;
    case Value::Kind::kArray:
      w.StartArray();
      for (const Value& e : v.AsArray()) Write(e, w);
      w.EndArray();
      break;
    case Value::Kind::kObject:
      w.StartObject();
      for (const auto& [key, member] : v.AsObject()) {
        w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        Write(member, w);
      }
      w.EndObject();
      break;
  }
}

}  // namespace

void Value::Set(std::string key, Value value) {
  for (auto& [k, v] : AsObject()) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  AsObject().emplace_back(std::move(key), std::move(value));
}

const Value* Value::Find(const std::string& key) const {
  for (const auto& [k, v] : AsObject()) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string Value::ToJson() const {
  rapidjson::StringBuffer out;
  Writer w(out);
  Write(*this, w);
  return out.GetString();
}

}  // namespace modelplane::config
