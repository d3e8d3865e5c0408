#include "proxy/router/route_table.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_string.h"

namespace modelplane::proxy::router {
namespace {

// A CA's PEM, held once by the route and shared by its requests; null for
// none (the system's roots).
std::shared_ptr<const std::string> SharedPem(const std::string& pem) {
  return pem.empty() ? nullptr : std::make_shared<const std::string>(pem);
}

std::string ToJson(const google::protobuf::Struct& s) {
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(s, &out).ok()) return "{}";
  return out;
}

FilterSpec FiltersFrom(const v1::ModelFilters& f) {
  FilterSpec spec;
  spec.strip_params.assign(f.strip_params().begin(), f.strip_params().end());
  // The JSON text keeps the config's numbers exact; the Struct (a double
  // for every number) is what an older manager sends.
  if (!f.set_params_json().empty() && f.set_params_json() != "{}") {
    spec.set_params_json = f.set_params_json();
  } else if (f.has_set_params() && f.set_params().fields_size() > 0) {
    spec.set_params_json = ToJson(f.set_params());
  }
  for (const auto& [name, params] : f.set_params_by_id()) {
    auto exact = f.set_params_by_id_json().find(name);
    spec.set_params_by_id_json[name] = exact != f.set_params_by_id_json().end()
                                           ? exact->second
                                           : ToJson(params);
  }
  return spec;
}

// llama-swap's rendering of `capabilities` into /v1/models: the
// modalities as `architecture`, what they make possible as `capabilities`
// (vision, audio_transcriptions, audio_speech, image_generation,
// image_to_image, function_calling, reranker), `supported_parameters` for
// tools, and `context_length`.
std::string CapabilityFields(const v1::Capabilities& c) {
  auto has = [](const auto& list, absl::string_view m) {
    return std::find(list.begin(), list.end(), m) != list.end();
  };
  auto array = [](const auto& list) {
    std::string out = "[";
    for (const std::string& s : list) {
      absl::StrAppend(&out, out.size() > 1 ? "," : "", JsonString(s));
    }
    return out + "]";
  };
  const auto& in = c.input_modalities();
  const auto& out = c.output_modalities();
  std::string fields;
  if (!in.empty() || !out.empty()) {
    std::string arch;
    if (!in.empty())
      absl::StrAppend(&arch, R"("input_modalities":)", array(in));
    if (!out.empty()) {
      absl::StrAppend(&arch, arch.empty() ? "" : ",", R"("output_modalities":)",
                      array(out));
    }
    if (!in.empty() && !out.empty()) {
      absl::StrAppend(&arch, R"(,"modality":)",
                      JsonString(absl::StrCat(absl::StrJoin(in, "+"), "->",
                                              absl::StrJoin(out, "+"))));
    }
    absl::StrAppend(&fields, R"(,"architecture":{)", arch, "}");
  }
  std::vector<std::string> caps;
  if (has(in, "image")) caps.push_back("vision");
  if (has(in, "audio") && has(out, "text")) {
    caps.push_back("audio_transcriptions");
  }
  if (has(in, "text") && has(out, "audio")) caps.push_back("audio_speech");
  if (has(in, "text") && has(out, "image")) caps.push_back("image_generation");
  if (has(in, "image") && has(out, "image")) caps.push_back("image_to_image");
  if (c.tools()) caps.push_back("function_calling");
  if (c.reranker()) caps.push_back("reranker");
  if (!in.empty() || !out.empty() || c.tools() || c.reranker()) {
    std::sort(caps.begin(), caps.end());
    std::string m;
    for (const std::string& k : caps) {
      absl::StrAppend(&m, m.empty() ? "" : ",", JsonString(k), ":true");
    }
    absl::StrAppend(&fields, R"(,"capabilities":{)", m, "}");
  }
  if (c.tools()) {
    absl::StrAppend(&fields,
                    R"(,"supported_parameters":["tools","tool_choice"])");
  }
  if (c.context() > 0) {
    absl::StrAppend(&fields, R"(,"context_length":)", c.context());
  }
  return fields;
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// How ready a state is, for a merged Route::state: READY highest, STOPPED
// lowest.
int Readiness(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_READY:
      return 5;
    case v1::MODEL_STATE_STARTING:
      return 4;
    case v1::MODEL_STATE_SLEEPING:  // Woken faster than started.
      return 3;
    case v1::MODEL_STATE_STOPPING:
      return 2;
    case v1::MODEL_STATE_FAILED:
      return 1;
    default:
      return 0;
  }
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
    r.filters = FiltersFrom(m.filters());
    r.filters.use_model_name = m.use_model_name();
    r.send_loading_state = m.send_loading_state();
    r.ignore_websockets = m.ignore_websockets();
    r.metadata_json = m.has_metadata() ? ToJson(m.metadata()) : "{}";
    if (m.has_capabilities()) {
      r.capability_fields = CapabilityFields(m.capabilities());
      r.context_length = m.capabilities().context();
      if (m.has_metadata()) {
        // The rendered fields win over metadata keys of the same names.
        google::protobuf::Struct kept = m.metadata();
        for (const char* k : {"architecture", "capabilities",
                              "supported_parameters", "context_length"}) {
          kept.mutable_fields()->erase(k);
        }
        r.metadata_json = ToJson(kept);
      }
    }
    r.state = m.state();
    r.model = std::make_shared<const v1::Model>(m);
    r.connect_timeout = FromProto(m.upstream_timeouts().connect());
    r.response_header_timeout =
        FromProto(m.upstream_timeouts().response_header());
    r.idle_timeout = FromProto(m.upstream_timeouts().idle_connection());
    r.keepalive = FromProto(m.upstream_timeouts().keepalive());
    r.tls_handshake_timeout = FromProto(m.upstream_timeouts().tls_handshake());
    r.tls_ca_pem = SharedPem(m.tls().ca_pem());
    r.tls_insecure = m.tls().insecure_skip_verify();
    if (m.has_replicas()) {
      r.replicas_max = std::max(1, static_cast<int>(m.replicas().max()));
      r.spillover_after = FromProto(m.replicas().spillover_after());
    }
    t->routes_.push_back(std::move(r));
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const Route& a, const Route& b) { return a.id < b.id; });
  t->Index();
  return t;
}

void RouteTable::Index() {
  by_name_.clear();
  for (size_t i = 0; i < routes_.size(); ++i) {
    for (const std::string& a : routes_[i].aliases) by_name_.emplace(a, i);
  }
  // Ids win over aliases (the loader forbids the clash within one config;
  // across nodes, a model's id wins over another's alias).
  for (size_t i = 0; i < routes_.size(); ++i) by_name_[routes_[i].id] = i;
}

std::shared_ptr<const RouteTable> RouteTable::AllStopped() const {
  auto t = std::make_shared<RouteTable>(*this);
  for (Route& r : t->routes_) {
    r.state = v1::MODEL_STATE_STOPPED;
    r.model = nullptr;
    for (RouteNode& n : r.nodes) {
      n.state = v1::MODEL_STATE_STOPPED;
      n.model = nullptr;
    }
  }
  return t;
}

std::shared_ptr<const RouteTable> RouteTable::Merge(const NodeTables& nodes) {
  auto t = std::make_shared<RouteTable>();
  std::map<std::string, size_t> at;  // Id -> index in routes_.
  for (const auto& [node, table] : nodes) {
    if (table == nullptr) continue;
    for (const Route& r : table->routes()) {
      auto [it, added] = at.emplace(r.id, t->routes_.size());
      if (added) {
        t->routes_.push_back(r);
        t->routes_.back().nodes.clear();
        t->routes_.back().model = nullptr;  // Each node's is in `nodes`.
      }
      Route& merged = t->routes_[it->second];
      merged.nodes.push_back(RouteNode{node, r.state, r.model});
      if (Readiness(r.state) > Readiness(merged.state)) merged.state = r.state;
    }
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const Route& a, const Route& b) { return a.id < b.id; });
  t->Index();
  return t;
}

const Route* RouteTable::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &routes_[it->second];
}

std::shared_ptr<const SelectorTable> SelectorTable::Build(
    const std::vector<v1::Selector>& selectors) {
  auto t = std::make_shared<SelectorTable>();
  for (const v1::Selector& s : selectors) {
    if (s.targets().empty()) continue;  // The manager never sends one.
    SelectorRoute r;
    r.id = s.id();
    r.strategy = s.strategy();
    r.targets.assign(s.targets().begin(), s.targets().end());
    r.spillover = std::max(1, static_cast<int>(s.spillover()));
    r.name = s.name();
    r.description = s.description();
    r.unlisted = s.unlisted();
    r.metadata_json = s.has_metadata() ? ToJson(s.metadata()) : "{}";
    t->routes_.push_back(std::move(r));
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const SelectorRoute& a, const SelectorRoute& b) {
              return a.id < b.id;
            });
  return t;
}

const SelectorRoute* SelectorTable::Find(const std::string& name) const {
  if (routes_.empty()) return nullptr;  // The usual case: one branch.
  auto it = std::lower_bound(
      routes_.begin(), routes_.end(), name,
      [](const SelectorRoute& r, const std::string& n) { return r.id < n; });
  return it != routes_.end() && it->id == name ? &*it : nullptr;
}

std::shared_ptr<const ProfileTable> ProfileTable::Build(
    const std::vector<v1::Profile>& profiles) {
  auto t = std::make_shared<ProfileTable>();
  for (const v1::Profile& p : profiles) {
    auto r = std::make_shared<ProfileRoute>();
    r->name = p.name();
    r->description = p.description();
    r->pins.insert(p.pins().begin(), p.pins().end());
    t->routes_.push_back(std::move(r));
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
  return t;
}

std::shared_ptr<const ProfileRoute> ProfileTable::Find(
    const std::string& name) const {
  for (const auto& r : routes_) {
    if (r->name == name) return r;
  }
  return nullptr;
}

std::shared_ptr<const PeerTable> PeerTable::Build(
    const std::vector<v1::Peer>& peers) {
  auto t = std::make_shared<PeerTable>();
  std::map<std::string, int> bare_count;
  for (const v1::Peer& p : peers) {
    for (const std::string& model : p.models()) {
      PeerRoute r;
      r.peer = p.id();
      r.model = model;
      // scheme://host:port, and the base path requests go under ("" or
      // "/api", without its last '/').
      const std::string& url = p.proxy();
      size_t host = url.find("//");
      size_t slash = host == std::string::npos ? std::string::npos
                                               : url.find('/', host + 2);
      r.upstream = url.substr(0, slash);
      if (slash != std::string::npos) {
        r.base_path = url.substr(slash);
        while (!r.base_path.empty() && r.base_path.back() == '/') {
          r.base_path.pop_back();
        }
      }
      r.api_key = p.api_key();
      r.filters = FiltersFrom(p.filters());
      r.connect_timeout = FromProto(p.upstream_timeouts().connect());
      r.response_header_timeout =
          FromProto(p.upstream_timeouts().response_header());
      r.idle_timeout = FromProto(p.upstream_timeouts().idle_connection());
      r.tls_handshake_timeout =
          FromProto(p.upstream_timeouts().tls_handshake());
      r.keepalive = FromProto(p.upstream_timeouts().keepalive());
      r.tls_ca_pem = SharedPem(p.tls().ca_pem());
      r.tls_insecure = p.tls().insecure_skip_verify();
      t->routes_.push_back(std::move(r));
      ++bare_count[model];
    }
  }
  std::sort(t->routes_.begin(), t->routes_.end(),
            [](const PeerRoute& a, const PeerRoute& b) {
              return a.name() < b.name();
            });
  for (size_t i = 0; i < t->routes_.size(); ++i) {
    const PeerRoute& r = t->routes_[i];
    t->by_name_[r.name()] = i;
    // A bare name is a name only while one peer has it.
    if (bare_count[r.model] == 1) t->by_name_.emplace(r.model, i);
  }
  return t;
}

const PeerRoute* PeerTable::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &routes_[it->second];
}

}  // namespace modelplane::proxy::router
