#include "client/mpctl_cluster.h"

#include <cstdio>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/mpctl_common.h"
#include "common/json_string.h"
#include "proxy/cluster/resolver.h"

namespace modelplane::mpctl {

absl::StatusOr<std::vector<NodeAddress>> ResolveNodes(
    const std::vector<std::string>& targets) {
  std::map<std::string, std::string> nodes;  // Address -> TLS name.
  for (const std::string& t : targets) {
    if (!proxy::cluster::IsDnsTarget(t)) {
      nodes.emplace(t, "");
      continue;
    }
    absl::StatusOr<proxy::cluster::DnsTarget> dns =
        proxy::cluster::ParseDnsTarget(t);
    if (!dns.ok()) return dns.status();
    absl::StatusOr<std::vector<std::string>> found =
        proxy::cluster::Resolve(*dns, absl::Seconds(5));
    if (!found.ok()) {
      return absl::Status(found.status().code(),
                          absl::StrCat(t, ": ", found.status().message()));
    }
    for (const std::string& a : *found) nodes.emplace(a, dns->name);
  }
  std::vector<NodeAddress> out;
  for (const auto& [address, name] : nodes) out.push_back({address, name});
  return out;
}

namespace {

// Every node's ListModels, asked at once.
std::vector<absl::StatusOr<v1::ListModelsResponse>> ListAll(
    std::vector<ClusterNode>& nodes) {
  std::vector<absl::StatusOr<v1::ListModelsResponse>> out(
      nodes.size(), absl::UnknownError("not asked"));
  std::vector<std::thread> calls;
  for (size_t i = 0; i < nodes.size(); ++i) {
    calls.emplace_back([&nodes, &out, i] {
      out[i] = nodes[i].client->ListModels(absl::Seconds(10));
    });
  }
  for (auto& t : calls) t.join();
  return out;
}

std::string Unreachable(const ClusterNode& n, const absl::Status& s) {
  return absl::IsUnavailable(s) && !AnsweredByTheManager(s.message())
             ? absl::StrCat("cannot reach modelmanager at ", n.name, " (",
                            ConnectError(s.message()), ")")
             : absl::StrCat(absl::StatusCodeToString(s.code()), ": ",
                            s.message());
}

bool Has(const v1::ListModelsResponse& r, const std::string& model) {
  for (const v1::Model& m : r.models()) {
    if (m.id() == model) return true;
    for (const std::string& a : m.aliases()) {
      if (a == model) return true;
    }
  }
  return false;
}

}  // namespace

int ClusterLs(std::vector<ClusterNode>& nodes, bool json) {
  auto all = ListAll(nodes);
  int code = 0;
  if (json) {
    std::string out = "{\"nodes\":[";
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (i > 0) out += ",";
      if (!all[i].ok()) {
        code = ExitCode(all[i].status());
        absl::StrAppend(
            &out, "{\"node\":", JsonString(nodes[i].name),
            ",\"error\":", JsonString(Unreachable(nodes[i], all[i].status())),
            "}");
        continue;
      }
      // Peers' keys are for data planes, not for a terminal or a log.
      for (v1::Peer& p : *all[i]->mutable_peers()) {
        if (!p.api_key().empty()) p.set_api_key("<redacted>");
      }
      std::string body = Json(*all[i]);
      absl::StrAppend(&out, "{\"node\":", JsonString(nodes[i].name),
                      body.size() > 2 ? "," : "", body.substr(1));
    }
    printf("%s]}\n", out.c_str());
    return code;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NODE"});
  for (const std::string& h : LsHeader()) rows[0].push_back(h);
  absl::Time now = absl::Now();
  std::vector<std::string> draining;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!all[i].ok()) continue;
    for (const v1::Model& m : all[i]->models()) {
      std::vector<std::string> row = {nodes[i].name};
      for (std::string& c : LsRow(m, now)) row.push_back(std::move(c));
      rows.push_back(std::move(row));
    }
    if (all[i]->draining()) draining.push_back(nodes[i].name);
  }
  PrintTable(rows);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (all[i].ok()) PrintGpus(*all[i], nodes[i].name + ": ");
  }
  if (!draining.empty()) {
    printf("(draining: %s: no model starts there)\n",
           absl::StrJoin(draining, ", ").c_str());
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (all[i].ok()) continue;
    fprintf(stderr, "mpctl: %s\n",
            Unreachable(nodes[i], all[i].status()).c_str());
    code = ExitCode(all[i].status());
  }
  return code;
}

int ClusterWatch(std::vector<ClusterNode>& nodes,
                 const std::vector<std::string>& models, bool json,
                 bool revisions) {
  v1::WatchRequest req;
  for (const std::string& m : models) req.add_models(m);
  absl::Mutex out;  // One line at a time.
  std::vector<absl::Status> ends(nodes.size());
  std::vector<std::thread> streams;
  for (size_t i = 0; i < nodes.size(); ++i) {
    streams.emplace_back([&, i] {
      WatchPrinter printer(revisions, nodes[i].name);
      ends[i] = nodes[i].client->Watch(
          req, absl::InfiniteDuration(), [&](const v1::WatchEvent& e) {
            absl::MutexLock lock(&out);
            if (json) {
              printf("{\"node\":%s,\"event\":%s}\n",
                     JsonString(nodes[i].name).c_str(), Json(e).c_str());
            } else {
              printer.Print(e);
            }
            fflush(stdout);
            return true;
          });
      absl::MutexLock lock(&out);
      if (!ends[i].ok()) {
        fprintf(stderr, "mpctl: %s: %s\n", nodes[i].name.c_str(),
                Unreachable(nodes[i], ends[i]).c_str());
      }
    });
  }
  for (auto& t : streams) t.join();
  for (const absl::Status& s : ends) {
    if (!s.ok()) return ExitCode(s);
  }
  return 0;
}

namespace {

// The reachable nodes that have `model`, and those that could not be asked.
struct Holders {
  std::vector<size_t> with;
  std::vector<std::string> unreachable;
};

Holders HoldersOf(std::vector<ClusterNode>& nodes, const std::string& model) {
  auto all = ListAll(nodes);
  Holders h;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!all[i].ok()) {
      h.unreachable.push_back(nodes[i].name);
    } else if (Has(*all[i], model)) {
      h.with.push_back(i);
    }
  }
  return h;
}

}  // namespace

std::vector<size_t> NodesWith(std::vector<ClusterNode>& nodes,
                              const std::string& model) {
  return HoldersOf(nodes, model).with;
}

absl::StatusOr<size_t> NodeOf(std::vector<ClusterNode>& nodes,
                              const std::string& model) {
  Holders h = HoldersOf(nodes, model);
  if (h.with.size() == 1) return h.with[0];
  if (h.with.size() > 1) {
    std::vector<std::string> names;
    for (size_t i : h.with) names.push_back(nodes[i].name);
    return absl::InvalidArgumentError(
        absl::StrCat("model '", model, "' is on several nodes (",
                     absl::StrJoin(names, ", "), "): say which with --node"));
  }
  if (!h.unreachable.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "no reachable node has model '", model, "', and ",
        absl::StrJoin(h.unreachable, ", "), " could not be reached"));
  }
  return absl::NotFoundError(absl::StrCat("no node has model '", model, "'"));
}

}  // namespace modelplane::mpctl
