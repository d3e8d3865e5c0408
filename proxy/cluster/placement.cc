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
                  const std::vector<Candidate>& candidates) {
  const auto& c = candidates;
  Choice choice;
  choice.index = Best(
      model, c, [&c](int i) { return c[i].state == v1::MODEL_STATE_READY; },
      [&c](int i) { return std::make_tuple(c[i].draining, c[i].busy); });
  if (choice.index >= 0) return choice;
  choice.reason = Reason::kStarting;
  choice.index = Best(
      model, c,
      [&c](int i) {
        return c[i].state == v1::MODEL_STATE_STARTING || c[i].busy > 0;
      },
      [&c](int i) { return c[i].draining; });
  if (choice.index >= 0) return choice;
  for (const Candidate& x : c) choice.ask_costs |= x.usable && !x.draining;
  return choice;
}

Choice PlaceByCost(absl::string_view model,
                   const std::vector<Candidate>& candidates,
                   const std::vector<v1::PlanStartResponse::Cost>& costs) {
  Choice choice;
  choice.reason = Reason::kCost;
  auto rank = [&](int i) {
    v1::PlanStartResponse::Cost cost =
        i < static_cast<int>(costs.size())
            ? costs[i]
            : v1::PlanStartResponse::COST_UNSPECIFIED;
    // Unknown (no answer) and refused last.
    return cost == v1::PlanStartResponse::COST_UNSPECIFIED ||
                   cost == v1::PlanStartResponse::COST_REFUSED
               ? 10
               : static_cast<int>(cost);
  };
  choice.index = Best(
      model, candidates, [&](int i) { return !candidates[i].draining; }, rank);
  return choice;
}

}  // namespace modelplane::proxy::cluster
