#include "proxy/router/route_table.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

namespace modelplane::proxy::router {
namespace {

std::string ToJson(const google::protobuf::Struct& s) {
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(s, &out).ok()) return "{}";
  return out;
}

}  // namespace

std::shared_ptr<const RouteTable> RouteTable::Build(
    const std::vector<v1::Model>& models) {
  auto t = std::make_shared<RouteTable>();
  for (const v1::Model& m : models) {
    Route r;
    r.id = m.id();
    r.name = m.name();
    r.description = m.description();
    r.aliases.assign(m.aliases().begin(), m.aliases().end());
    r.unlisted = m.unlisted();
    r.concurrency_limit = m.concurrency_limit() > 0
                              ? static_cast<int>(m.concurrency_limit())
                              : 10;
    r.filters.use_model_name = m.use_model_name();
    r.send_loading_state = m.send_loading_state();
    r.filters.strip_params.assign(m.filters().strip_params().begin(),
                                  m.filters().strip_params().end());
    if (m.filters().has_set_params() &&
        m.filters().set_params().fields_size() > 0) {
      r.filters.set_params_json = ToJson(m.filters().set_params());
    }
    for (const auto& [name, params] : m.filters().set_params_by_id()) {
      r.filters.set_params_by_id_json[name] = ToJson(params);
    }
    r.metadata_json = m.has_metadata() ? ToJson(m.metadata()) : "{}";
    r.state = m.state();
    auto duration = [](const google::protobuf::Duration& d) {
      return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
    };
    r.connect_timeout = duration(m.upstream_timeouts().connect());
    r.response_header_timeout =
        duration(m.upstream_timeouts().response_header());
    r.idle_timeout = duration(m.upstream_timeouts().idle_connection());
    t->routes_.push_back(std::move(r));
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const Route& a, const Route& b) { return a.id < b.id; });
  for (size_t i = 0; i < t->routes_.size(); ++i) {
    for (const std::string& a : t->routes_[i].aliases)
      t->by_name_.emplace(a, i);
  }
  // Ids win over aliases (the loader forbids the clash anyway).
  for (size_t i = 0; i < t->routes_.size(); ++i)
    t->by_name_[t->routes_[i].id] = i;
  return t;
}

const Route* RouteTable::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &routes_[it->second];
}

}  // namespace modelplane::proxy::router
