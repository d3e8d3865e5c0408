#include "proxy/cluster/cluster.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace modelplane::proxy::cluster {
namespace {

bool Excluded(const std::vector<std::string>& exclude,
              const std::string& node) {
  return std::find(exclude.begin(), exclude.end(), node) != exclude.end();
}

// The candidates for `route`: one per node that has it.
std::vector<Candidate> CandidatesFor(const NodeSet* set,
                                     const router::Route& route,
                                     const std::vector<std::string>& exclude) {
  std::vector<Candidate> c;
  c.reserve(route.nodes.size());
  for (const router::RouteNode& rn : route.nodes) {
    Node* n = set != nullptr ? set->Find(rn.node) : nullptr;
    Candidate x;
    x.node = rn.node;
    x.state = rn.state;
    x.usable = n != nullptr && n->usable() && !Excluded(exclude, rn.node);
    x.busy = n != nullptr ? n->broker().Busy(route.id) : 0;
    x.draining = n != nullptr && n->draining();
    x.at_limit = n != nullptr &&
                 n->broker().InFlight(route.id) >= route.concurrency_limit;
    x.saturated = x.at_limit ||
                  (route.replicas_max > 1 && n != nullptr &&
                   n->broker().OldestWait(route.id) > route.spillover_after);
    c.push_back(std::move(x));
  }
  return c;
}

absl::Status NoNode(const router::Route& route,
                    const std::vector<Candidate>& c) {
  bool any_draining = std::any_of(c.begin(), c.end(), [](const Candidate& x) {
    return x.usable && x.draining;
  });
  std::vector<std::string> names;
  for (const Candidate& x : c) names.push_back(x.node);
  if (any_draining) {
    return absl::UnavailableError(absl::StrCat(
        "model '", route.id, "' is not running, and every reachable node that ",
        "has it (", absl::StrJoin(names, ", "),
        ") is draining: it starts no model; retry"));
  }
  return absl::UnavailableError(
      absl::StrCat("no model manager that has model '", route.id,
                   "' is reachable (", absl::StrJoin(names, ", "), "); retry"));
}

}  // namespace

Cluster::Cluster(router::RoutingState* routing, ClusterOptions options)
    : routing_(routing), options_(std::move(options)) {
  absl::MutexLock lock(&mu_);
  nodes_ = std::make_shared<NodeSet>(std::vector<std::shared_ptr<Node>>());
}

Cluster::~Cluster() { Shutdown(); }

std::shared_ptr<Node> Cluster::Connect(const std::string& name,
                                       const std::string& target,
                                       const std::string& tls_name) {
  lease::LinkOptions link = options_.link;
  link.manager.target = target;
  link.manager.tls_server_name = tls_name;
  return std::make_shared<Node>(name, std::move(link), options_.after);
}

void Cluster::SetMembers(const std::vector<std::string>& targets,
                         const std::map<std::string, std::string>& tls_names) {
  // By the node's name: its target unless options_.node_names has one.
  std::map<std::string, std::string> wanted;
  for (const std::string& t : targets) {
    auto named = options_.node_names.find(t);
    wanted.emplace(named != options_.node_names.end() ? named->second : t, t);
  }
  std::vector<std::shared_ptr<Node>> added;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    for (auto it = members_.begin(); it != members_.end();) {
      if (wanted.count(it->first) == 0) {
        leaving_.push_back(std::move(it->second.node));
        it = members_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [node, t] : wanted) {
      if (members_.count(node) != 0) continue;
      Member m;
      auto name = tls_names.find(t);
      m.node = Connect(node, t, name != tls_names.end() ? name->second : "");
      added.push_back(m.node);
      members_.emplace(node, std::move(m));
    }
    std::vector<std::shared_ptr<Node>> all;
    for (const auto& [name, m] : members_) all.push_back(m.node);
    nodes_ = std::make_shared<NodeSet>(std::move(all));
    Publish();
  }
  // Outside the lock: a link's first view may come at once.
  for (const auto& n : added) {
    std::string name = n->name();
    n->Start([this, name](lease::ManagerLink::View v) {
      OnView(name, std::move(v));
    });
  }
}

std::shared_ptr<Node> Cluster::AddNode(const std::string& name,
                                       lease::LeaseTransport* transport) {
  auto node = std::make_shared<Node>(name, transport, options_.after);
  absl::MutexLock lock(&mu_);
  Member m;
  m.node = node;
  members_[name] = std::move(m);
  std::vector<std::shared_ptr<Node>> all;
  for (const auto& [n, member] : members_) all.push_back(member.node);
  nodes_ = std::make_shared<NodeSet>(std::move(all));
  Publish();
  return node;
}

void Cluster::OnView(const std::string& node, lease::ManagerLink::View view) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  auto it = members_.find(node);
  if (it == members_.end()) return;  // It left meanwhile.
  Member& m = it->second;
  if (!view.connected) {
    // Lost: its models stay known (a request for one gets 503, or another
    // node), none taken for running there; its settings stay in force.
    m.connected = false;
    if (m.routes != nullptr) m.routes = m.routes->AllStopped();
  } else {
    m.connected = true;
    if (view.routes != nullptr) m.routes = std::move(view.routes);
    if (view.settings != nullptr) {
      m.settings = std::move(view.settings);
      m.node->set_draining(m.settings->draining());
    }
  }
  Publish();
}

void Cluster::Publish() {
  router::RouteTable::NodeTables tables;
  std::shared_ptr<const v1::DataPlaneSettings> settings;
  for (const auto& [name, m] : members_) {
    tables.emplace_back(name, m.routes);
    if (settings == nullptr && m.settings != nullptr) settings = m.settings;
  }
  std::shared_ptr<const router::Settings> compiled;
  if (settings != nullptr && settings != settings_) {
    settings_ = settings;
    compiled = router::Settings::From(*settings);
  }
  bool changed = compiled != nullptr;
  routing_->Update(router::RouteTable::Merge(tables), std::move(compiled),
                   nodes_);
  // Told once the workers' snapshot holds them: whoever waits for the
  // first settings (modelplane, before it says it listens) may then serve
  // a request that needs the API keys.
  if (changed && options_.on_settings) options_.on_settings(*settings);
}

bool Cluster::Reap() {
  std::vector<std::shared_ptr<Node>> done;
  bool waiting = false;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = leaving_.begin(); it != leaving_.end();) {
      std::map<std::string, int> in_flight, queued;
      (*it)->broker().Loads(&in_flight, &queued);
      bool idle = true;
      for (const auto& [model, n] : in_flight) idle &= n == 0;
      for (const auto& [model, n] : queued) idle &= n == 0;
      if (idle) {
        done.push_back(std::move(*it));
        it = leaving_.erase(it);
      } else {
        ++it;
      }
    }
    waiting = !leaving_.empty();
  }
  // Outside the lock: ending a link waits for its streams, whose last
  // reactions may call OnView.
  for (const auto& n : done) n->Retire();
  return waiting;
}

void Cluster::Shutdown() {
  std::vector<std::shared_ptr<Node>> all;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& [name, m] : members_) all.push_back(m.node);
    for (auto& n : leaving_) all.push_back(n);
    leaving_.clear();
    // PlanStart answers still due (each within plan_timeout) touch this.
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](int* plans) { return *plans == 0; }, &plans_),
                         options_.plan_timeout + absl::Seconds(1));
  }
  for (const auto& n : all) n->Retire();
}

std::shared_ptr<const NodeSet> Cluster::nodes() const {
  absl::MutexLock lock(&mu_);
  return nodes_;
}

absl::StatusOr<Placement> Cluster::PlaceKnown(
    const router::Snapshot& snapshot, const router::Route& route,
    const std::vector<std::string>& exclude) const {
  const NodeSet* set = snapshot.nodes();
  if (route.nodes.size() == 1 && exclude.empty()) {
    // One node has it (every model of a one-manager proxy): no choice to
    // weigh.
    const router::RouteNode& rn = route.nodes[0];
    std::shared_ptr<Node> n = set != nullptr ? set->Share(rn.node) : nullptr;
    if (n != nullptr && n->usable()) {
      Reason reason = rn.state == v1::MODEL_STATE_READY      ? Reason::kReady
                      : rn.state == v1::MODEL_STATE_STARTING ? Reason::kStarting
                                                             : Reason::kCost;
      // Draining or not: its manager refuses a start with its own reason.
      return Placement{std::move(n), reason};
    }
  }
  std::vector<Candidate> c = CandidatesFor(set, route, exclude);
  Choice ch = cluster::PlaceKnown(route.id, c, route.replicas_max);
  if (ch.index >= 0) return Placement{set->Share(c[ch.index].node), ch.reason};
  if (!ch.ask_costs) return NoNode(route, c);
  bool spill = ch.reason == Reason::kSpillover;
  int startable = 0;
  int last = -1;
  for (int i = 0; i < static_cast<int>(c.size()); ++i) {
    if (c[i].usable && !c[i].draining && !(spill && c[i].Holds())) {
      ++startable;
      last = i;
    }
  }
  // One node could start it: no need to ask what it costs.
  if (startable == 1) return Placement{set->Share(c[last].node), ch.reason};
  return Placement{nullptr, ch.reason};
}

void Cluster::PlaceCold(std::shared_ptr<const router::Snapshot> snapshot,
                        const router::Route& route,
                        std::vector<std::string> exclude, bool spill, Post post,
                        std::function<void(absl::StatusOr<Placement>)> done) {
  struct Gather {
    absl::Mutex mu;
    std::vector<v1::PlanStartResponse::Cost> costs ABSL_GUARDED_BY(mu);
    int left ABSL_GUARDED_BY(mu) = 0;
    std::vector<Candidate> candidates;
    std::shared_ptr<const router::Snapshot> snapshot;
    std::string model;
    bool spill = false;
    Post post;
    std::function<void(absl::StatusOr<Placement>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->candidates = CandidatesFor(snapshot->nodes(), route, exclude);
  g->snapshot = std::move(snapshot);
  g->model = route.id;
  g->spill = spill;
  g->post = std::move(post);
  g->done = std::move(done);
  auto finish = [this](const std::shared_ptr<Gather>& g) {
    {
      // After Shutdown the workers' loops are going: nothing is posted.
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
    }
    std::vector<v1::PlanStartResponse::Cost> costs;
    {
      absl::MutexLock lock(&g->mu);
      costs = g->costs;
    }
    Choice ch = PlaceByCost(g->model, g->candidates, costs, g->spill);
    absl::StatusOr<Placement> result =
        ch.index >= 0
            ? absl::StatusOr<Placement>(Placement{
                  g->snapshot->nodes()->Share(g->candidates[ch.index].node),
                  ch.reason})
            : absl::StatusOr<Placement>(absl::UnavailableError(
                  absl::StrCat("no model manager that has model '", g->model,
                               "' can start it now; retry")));
    g->post([g, result = std::move(result)]() mutable {
      g->done(std::move(result));
    });
  };
  std::vector<std::pair<int, std::shared_ptr<Node>>> ask;
  for (int i = 0; i < static_cast<int>(g->candidates.size()); ++i) {
    const Candidate& x = g->candidates[i];
    if (!x.usable || x.draining || (spill && x.Holds())) continue;
    std::shared_ptr<Node> n = g->snapshot->nodes()->Share(x.node);
    if (n != nullptr && n->link() != nullptr) ask.emplace_back(i, n);
  }
  {
    absl::MutexLock lock(&g->mu);
    g->costs.assign(g->candidates.size(),
                    v1::PlanStartResponse::COST_UNSPECIFIED);
    g->left = static_cast<int>(ask.size());
  }
  if (ask.empty()) return finish(g);
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;  // The workers are going: nobody waits.
    plans_ += static_cast<int>(ask.size());
  }
  for (auto& [i, n] : ask) {
    int index = i;
    n->link()->PlanStart(
        g->model, options_.plan_timeout,
        [this, g, index, finish](absl::StatusOr<v1::PlanStartResponse> r) {
          bool last;
          {
            absl::MutexLock lock(&g->mu);
            if (r.ok()) g->costs[index] = r->cost();
            last = --g->left == 0;
          }
          if (last) finish(g);
          absl::MutexLock lock(&mu_);
          --plans_;  // Shutdown waits for this.
        });
  }
}

int Cluster::Busy(const router::Snapshot& snapshot, const std::string& model) {
  const router::Route* route = snapshot.routes().Find(model);
  const NodeSet* set = snapshot.nodes();
  if (route == nullptr || set == nullptr) return 0;
  int busy = 0;
  for (const router::RouteNode& rn : route->nodes) {
    if (Node* n = set->Find(rn.node)) busy += n->broker().Busy(route->id);
  }
  return busy;
}

void Cluster::Unload(
    const std::string& model,
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  std::vector<std::shared_ptr<Node>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, m] : members_) {
      if (m.node->link() == nullptr) continue;
      if (!model.empty() &&
          (m.routes == nullptr || m.routes->Find(model) == nullptr)) {
        continue;
      }
      targets.push_back(m.node);
    }
  }
  if (targets.empty()) {
    return done(absl::UnavailableError(
        model.empty()
            ? "no model manager to stop models"
            : absl::StrCat("no model manager has model '", model, "'")));
  }
  struct Gather {
    absl::Mutex mu;
    std::set<std::string> ids ABSL_GUARDED_BY(mu);
    absl::Status error ABSL_GUARDED_BY(mu);
    int ok ABSL_GUARDED_BY(mu) = 0;
    int left ABSL_GUARDED_BY(mu) = 0;
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  {
    absl::MutexLock lock(&g->mu);
    g->left = static_cast<int>(targets.size());
  }
  for (const auto& n : targets) {
    n->link()->Unload(model, [g](absl::StatusOr<std::vector<std::string>> r) {
      absl::StatusOr<std::vector<std::string>> out;
      {
        absl::MutexLock lock(&g->mu);
        if (r.ok()) {
          ++g->ok;
          g->ids.insert(r->begin(), r->end());
        } else {
          g->error = r.status();
        }
        if (--g->left > 0) return;
        if (g->ok == 0) {
          out = g->error;
        } else {
          out = std::vector<std::string>(g->ids.begin(), g->ids.end());
        }
      }
      g->done(std::move(out));
    });
  }
}

}  // namespace modelplane::proxy::cluster
