// A JSON-like value that keeps YAML's scalar types: the type of `metadata`
// and `filters.setParams` in a model's config, compared by the reload diff
// and printed by `modelmanager --print-config`.
//
//   Value v = Value::Object();
//   v.Set("temperature", Value::Double(0.7));
//   v.ToJson();  // {"temperature":0.7}
#ifndef MODELPLANE_SERVER_CORE_CONFIG_VALUE_H_
#define MODELPLANE_SERVER_CORE_CONFIG_VALUE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace modelplane::config {

class Value {
 public:
  using Array = std::vector<Value>;
  // Members in the order the YAML file gave them.
  using Members = std::vector<std::pair<std::string, Value>>;
  enum class Kind { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Value() = default;  // Null.
  static Value Bool(bool b) { return Value(b); }
  static Value Int(int64_t i) { return Value(i); }
  static Value Double(double d) { return Value(d); }
  static Value String(std::string s) { return Value(std::move(s)); }
  static Value EmptyArray() { return Value(Array()); }
  static Value Object() { return Value(Members()); }

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }
  bool AsBool() const { return std::get<bool>(data_); }
  int64_t AsInt() const { return std::get<int64_t>(data_); }
  double AsDouble() const { return std::get<double>(data_); }
  const std::string& AsString() const { return std::get<std::string>(data_); }
  std::string& AsString() { return std::get<std::string>(data_); }
  const Array& AsArray() const { return std::get<Array>(data_); }
  Array& AsArray() { return std::get<Array>(data_); }
  const Members& AsObject() const { return std::get<Members>(data_); }
  Members& AsObject() { return std::get<Members>(data_); }

  // Object only: replaces the member named `key` or appends it.
  void Set(std::string key, Value value);
  // Object only: the member named `key`, or nullptr.
  const Value* Find(const std::string& key) const;

  // Compact JSON. Doubles print in the shortest form that reads back the
  // same; non-finite doubles print as null (JSON has no NaN).
  std::string ToJson() const;

  bool operator==(const Value& other) const { return data_ == other.data_; }
  bool operator!=(const Value& other) const { return !(*this == other); }

 private:
  template <typename T>
  explicit Value(T v) : data_(std::move(v)) {}

  std::variant<std::monostate, bool, int64_t, double, std::string, Array,
               Members>
      data_;
};

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_VALUE_H_
