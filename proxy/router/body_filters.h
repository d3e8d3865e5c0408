// The per-model request filters of a llama-swap config, applied to a body
// before it goes upstream, in llama-swap's order: `useModelName` replaces
// `model`, `filters.stripParams` removes paths ("a.b.0"), `filters.setParams`
// sets paths (never `model`, nor a path through it). Only a body that a
// filter changes is re-serialized; the caller fixes Content-Length.
//
//   FilterSpec f{"Qwen/Qwen2.5-7B", {"temperature"}, R"({"top_k":20})"};
//   absl::StatusOr<std::string> out = ApplyJsonFilters(body, f);
#ifndef MODELPLANE_PROXY_ROUTER_BODY_FILTERS_H_
#define MODELPLANE_PROXY_ROUTER_BODY_FILTERS_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

struct FilterSpec {
  std::string use_model_name;             // Empty: keep the model.
  std::vector<std::string> strip_params;  // Paths to remove.
  // A JSON object of path -> value, or empty. Paths are sjson's: see
  // body_filters.cc and docs/config.md.
  std::string set_params_json;
  // Requested model name -> a JSON object set after set_params_json
  // (llama-swap's setParamsByID).
  std::map<std::string, std::string, std::less<>> set_params_by_id_json;

  // Whether a request naming the model `requested` is rewritten at all.
  bool AppliesTo(absl::string_view requested) const {
    return !use_model_name.empty() || !strip_params.empty() ||
           !set_params_json.empty() ||
           set_params_by_id_json.find(requested) != set_params_by_id_json.end();
  }
};

// The filtered JSON body of a request that named the model `requested`:
// useModelName, stripParams, setParams, then setParamsByID[requested] (as
// llama-swap orders them). InvalidArgument when the body is not a JSON
// object (the client gets 400). `body` is parsed in place (its strings are
// the tree's: a large body is not copied for it) and freed.
absl::StatusOr<std::string> ApplyJsonFilters(std::string body,
                                             const FilterSpec& filters,
                                             absl::string_view requested = {});

// Replaces the value of a multipart/form-data body's `model` field, in
// place (useModelName for transcriptions: the audio file is not copied).
// Unchanged when there is no such field.
void RewriteMultipartModel(std::string* body, absl::string_view boundary,
                           absl::string_view model);

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_BODY_FILTERS_H_
