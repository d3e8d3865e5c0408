#include "proxy/cluster/placement.h"

#include <tuple>
#include <vector>

namespace modelplane::proxy::cluster {
namespace {

// FNV-1a over the bytes, then a 64-bit finalizer (splitmix64's) so that
// names differing in one character spread over the whole range.
uint64_t Fnv(uint64_t h, absl::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The best candidate by `key` (smaller first), ties by the higher
// rendezvous weight; -1 when `eligible` takes none.
template <typename Eligible, typename Key>
int Best(absl::string_view model, const std::vector<Candidate>& c,
         Eligible eligible, Key key) {
  int best = -1;
  uint64_t best_weight = 0;
  for (int i = 0; i < static_cast<int>(c.size()); ++i) {
    if (!c[i].usable || !eligible(i)) continue;
    uint64_t w = RendezvousWeight(model, c[i].node);
    if (best < 0 || key(i) < key(best) ||
        (!(key(best) < key(i)) && w > best_weight)) {
      best = i;
      best_weight = w;
    }
  }
  return best;
}

}  // namespace

const char* ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kReady:
      return "ready";
    case Reason::kStarting:
      return "starting";
    case Reason::kCost:
      return "cost";
    case Reason::kSpillover:
      return "spillover";
    case Reason::kFailover:
      return "failover";
  }
  return "unknown";
}

uint64_t RendezvousWeight(absl::string_view model, absl::string_view node) {
  uint64_t h = Fnv(0xcbf29ce484222325ULL, model);
  h = Fnv(h, absl::string_view("\0", 1));
  return Mix(Fnv(h, node));
}

Choice PlaceKnown(absl::string_view model,
                  const std::vector<Candidate>& candidates, int replicas_max) {
  const auto& c = candidates;
  auto ready = [&c](int i) { return c[i].state == v1::MODEL_STATE_READY; };
  auto starting = [&c](int i) {
    return c[i].state == v1::MODEL_STATE_STARTING || c[i].busy > 0;
  };
  auto by_load = [&c](int i) {
    return std::make_tuple(c[i].draining, c[i].busy);
  };
  auto by_draining = [&c](int i) { return c[i].draining; };
  Choice choice;
  // (1) READY, then (2) STARTING, each first where it is under its limit.
  choice.index = Best(
      model, c, [&](int i) { return ready(i) && !c[i].at_limit; }, by_load);
  if (choice.index < 0) {
    choice.reason = Reason::kStarting;
    choice.index = Best(
        model, c, [&](int i) { return starting(i) && !c[i].at_limit; },
        by_draining);
  }
  if (choice.index < 0) {
    choice.reason = Reason::kReady;
    choice.index = Best(model, c, ready, by_load);
  }
  if (choice.index < 0) {
    choice.reason = Reason::kStarting;
    choice.index = Best(model, c, starting, by_draining);
  }
  bool startable = false;
  for (const Candidate& x : c) {
    startable |= x.usable && !x.draining && !(choice.index >= 0 && x.Holds());
  }
  if (choice.index >= 0 && replicas_max > 1 && startable) {
    // Spillover: every holder saturated, and room for one more.
    int holders = 0;
    bool all_saturated = true;
    for (const Candidate& x : c) {
      if (!x.Holds()) continue;
      ++holders;
      all_saturated &= x.saturated || !x.usable;
    }
    if (holders < replicas_max && all_saturated) {
      Choice spill;
      spill.reason = Reason::kSpillover;
      spill.ask_costs = true;
      return spill;
    }
  }
  if (choice.index >= 0) return choice;
  choice.ask_costs = startable;
  choice.reason = Reason::kCost;
  return choice;
}

Choice PlaceByCost(absl::string_view model,
                   const std::vector<Candidate>& candidates,
                   const std::vector<v1::PlanStartResponse::Cost>& costs,
                   bool spill) {
  Choice choice;
  choice.reason = spill ? Reason::kSpillover : Reason::kCost;
  auto rank = [&](int i) {
    v1::PlanStartResponse::Cost cost =
        i < static_cast<int>(costs.size())
            ? costs[i]
            : v1::PlanStartResponse::COST_UNSPECIFIED;
    // Unknown (no answer) and refused last; among equal costs a node
    // where the model sleeps (its process kept, its weights in host
    // memory: a wake takes a fraction of a cold start).
    int tier = cost == v1::PlanStartResponse::COST_UNSPECIFIED ||
                       cost == v1::PlanStartResponse::COST_REFUSED
                   ? 10
                   : static_cast<int>(cost);
    return std::make_tuple(tier,
                           candidates[i].state != v1::MODEL_STATE_SLEEPING);
  };
  choice.index = Best(
      model, candidates,
      [&](int i) {
        return !candidates[i].draining && !(spill && candidates[i].Holds());
      },
      rank);
  return choice;
}

}  // namespace modelplane::proxy::cluster
