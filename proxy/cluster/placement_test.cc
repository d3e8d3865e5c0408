#include "proxy/cluster/placement.h"

#include <set>

#include "gtest/gtest.h"

namespace modelplane::proxy::cluster {
namespace {

using Cost = v1::PlanStartResponse::Cost;
constexpr v1::ModelState kReady = v1::MODEL_STATE_READY;
constexpr v1::ModelState kStarting = v1::MODEL_STATE_STARTING;
constexpr v1::ModelState kStopped = v1::MODEL_STATE_STOPPED;

Candidate C(const std::string& node, v1::ModelState state, int busy = 0,
            bool draining = false, bool usable = true) {
  return Candidate{node, state, busy, draining, usable};
}

// The node the rendezvous hash prefers among `nodes` for `model`.
std::string Preferred(const std::string& model,
                      const std::vector<std::string>& nodes) {
  std::string best;
  uint64_t w = 0;
  for (const auto& n : nodes) {
    if (best.empty() || RendezvousWeight(model, n) > w) {
      best = n;
      w = RendezvousWeight(model, n);
    }
  }
  return best;
}

TEST(PlacementTest, ReadyWinsThenFewestInFlight) {
  std::vector<Candidate> c = {C("n1", kStopped), C("n2", kReady, 3),
                              C("n3", kStarting), C("n4", kReady, 1)};
  Choice ch = PlaceKnown("m", c);
  EXPECT_EQ(ch.index, 3);
  EXPECT_EQ(ch.reason, Reason::kReady);
  EXPECT_FALSE(ch.ask_costs);
}

TEST(PlacementTest, ReadyTiesGoByRendezvous) {
  std::vector<Candidate> c = {C("n1", kReady), C("n2", kReady),
                              C("n3", kReady)};
  for (const std::string model : {"a", "b", "c", "d", "e", "f"}) {
    Choice ch = PlaceKnown(model, c);
    ASSERT_GE(ch.index, 0);
    EXPECT_EQ(c[ch.index].node, Preferred(model, {"n1", "n2", "n3"}));
    // The same whatever the candidates' order (every proxy agrees).
    std::vector<Candidate> r(c.rbegin(), c.rend());
    EXPECT_EQ(r[PlaceKnown(model, r).index].node, c[ch.index].node);
  }
}

TEST(PlacementTest, RendezvousSpreadsModelsOverNodes) {
  std::set<std::string> chosen;
  std::vector<Candidate> c = {C("10.0.0.1:50051", kReady),
                              C("10.0.0.2:50051", kReady),
                              C("10.0.0.3:50051", kReady)};
  for (int i = 0; i < 30; ++i) {
    chosen.insert(c[PlaceKnown("model-" + std::to_string(i), c).index].node);
  }
  EXPECT_EQ(chosen.size(), 3u);
}

TEST(PlacementTest, StartingOrAlreadyAskedComesNext) {
  std::vector<Candidate> c = {C("n1", kStopped), C("n2", kStarting)};
  Choice ch = PlaceKnown("m", c);
  EXPECT_EQ(ch.index, 1);
  EXPECT_EQ(ch.reason, Reason::kStarting);
  // A node this proxy already waits on counts as starting.
  c = {C("n1", kStopped, 2), C("n2", kStopped)};
  EXPECT_EQ(PlaceKnown("m", c).index, 0);
}

TEST(PlacementTest, DrainingNodesAreTakenLastAndNeverForACold) {
  std::vector<Candidate> c = {C("n1", kReady, 0, true), C("n2", kReady, 5)};
  EXPECT_EQ(PlaceKnown("m", c).index, 1);
  c = {C("n1", kReady, 0, true), C("n2", kStopped)};
  EXPECT_EQ(PlaceKnown("m", c).index, 0);  // Still serves what it runs.
  c = {C("n1", kStopped, 0, true), C("n2", kStopped, 0, true)};
  Choice ch = PlaceKnown("m", c);
  EXPECT_EQ(ch.index, -1);
  EXPECT_FALSE(ch.ask_costs);  // No node may start it.
}

TEST(PlacementTest, UnusableNodesAreNeverChosen) {
  std::vector<Candidate> c = {C("n1", kReady, 0, false, false),
                              C("n2", kStopped)};
  Choice ch = PlaceKnown("m", c);
  EXPECT_EQ(ch.index, -1);
  EXPECT_TRUE(ch.ask_costs);
  EXPECT_EQ(PlaceByCost("m", c,
                        {v1::PlanStartResponse::COST_NONE,
                         v1::PlanStartResponse::COST_EVICT_BUSY})
                .index,
            1);
  c[1].usable = false;
  EXPECT_EQ(PlaceKnown("m", c).index, -1);
  EXPECT_FALSE(PlaceKnown("m", c).ask_costs);
}

TEST(PlacementTest, CheapestStartWins) {
  std::vector<Candidate> c = {C("n1", kStopped), C("n2", kStopped),
                              C("n3", kStopped)};
  struct Case {
    std::vector<Cost> costs;
    int want;
  };
  const Cost kNone = v1::PlanStartResponse::COST_NONE;
  const Cost kIdle = v1::PlanStartResponse::COST_EVICT_IDLE;
  const Cost kBusy = v1::PlanStartResponse::COST_EVICT_BUSY;
  const Cost kRefused = v1::PlanStartResponse::COST_REFUSED;
  const Cost kUnknown = v1::PlanStartResponse::COST_UNSPECIFIED;
  for (const Case& k : std::vector<Case>{
           {{kBusy, kIdle, kBusy}, 1},
           {{kIdle, kBusy, kNone}, 2},
           {{kRefused, kBusy, kUnknown}, 1},
           {{kUnknown, kRefused, kIdle}, 2},
       }) {
    Choice ch = PlaceByCost("m", c, k.costs);
    EXPECT_EQ(ch.index, k.want);
    EXPECT_EQ(ch.reason, Reason::kCost);
  }
  // Equal costs: rendezvous.
  Choice ch = PlaceByCost("m", c, {kIdle, kIdle, kIdle});
  EXPECT_EQ(c[ch.index].node, Preferred("m", {"n1", "n2", "n3"}));
  // Equal costs and the model asleep on one node: that one, wherever
  // rendezvous would go; a cheaper start elsewhere still wins.
  for (size_t asleep = 0; asleep < c.size(); ++asleep) {
    std::vector<Candidate> s = c;
    s[asleep].state = v1::MODEL_STATE_SLEEPING;
    EXPECT_EQ(PlaceByCost("m", s, {kIdle, kIdle, kIdle}).index,
              static_cast<int>(asleep));
    std::vector<Cost> cheaper = {kIdle, kIdle, kIdle};
    cheaper[(asleep + 1) % 3] = kNone;
    EXPECT_EQ(PlaceByCost("m", s, cheaper).index,
              static_cast<int>((asleep + 1) % 3));
  }
  // Every one refused: one of them still (its refusal is the answer).
  EXPECT_GE(PlaceByCost("m", c, {kRefused, kRefused, kRefused}).index, 0);
  // Never a draining node, even the cheapest.
  c[0].draining = true;
  EXPECT_EQ(PlaceByCost("m", c, {kNone, kBusy, kRefused}).index, 1);
  c[1].draining = c[2].draining = true;
  EXPECT_EQ(PlaceByCost("m", c, {kNone, kNone, kNone}).index, -1);
}

TEST(PlacementTest, ANodeAtItsLimitIsTakenOnlyWhenNoOtherIs) {
  std::vector<Candidate> c = {C("n1", kReady, 10), C("n2", kStarting, 1)};
  c[0].at_limit = true;
  Choice ch = PlaceKnown("m", c);
  EXPECT_EQ(ch.index, 1);  // Waits for the start rather than a 429.
  EXPECT_EQ(ch.reason, Reason::kStarting);
  c[1].at_limit = true;
  EXPECT_EQ(PlaceKnown("m", c).index, 0);  // Both full: the READY one.
}

TEST(PlacementTest, ReplicasSpillOverWhenEveryHolderIsSaturated) {
  std::vector<Candidate> c = {C("n1", kReady, 3), C("n2", kStopped),
                              C("n3", kStopped)};
  // Not saturated: it stays where it runs.
  Choice ch = PlaceKnown("m", c, 2);
  EXPECT_EQ(ch.index, 0);
  c[0].saturated = true;
  // Without replicas the saturated node still takes it.
  EXPECT_EQ(PlaceKnown("m", c, 1).index, 0);
  ch = PlaceKnown("m", c, 2);
  EXPECT_EQ(ch.index, -1);
  EXPECT_TRUE(ch.ask_costs);
  EXPECT_EQ(ch.reason, Reason::kSpillover);
  // Among the nodes that do not hold it, by cost.
  const Cost kNone = v1::PlanStartResponse::COST_NONE;
  const Cost kIdle = v1::PlanStartResponse::COST_EVICT_IDLE;
  Choice by_cost = PlaceByCost("m", c, {kNone, kIdle, kNone}, true);
  EXPECT_EQ(by_cost.index, 2);
  EXPECT_EQ(by_cost.reason, Reason::kSpillover);
  // At max: no more replicas, the holder keeps it.
  c[1].state = kReady;
  c[1].saturated = true;
  ch = PlaceKnown("m", c, 2);
  EXPECT_GE(ch.index, 0);
  EXPECT_NE(ch.reason, Reason::kSpillover);
  // A holder that is not saturated (a replica starting) takes it instead.
  c = {C("n1", kReady, 3), C("n2", kStarting, 1), C("n3", kStopped)};
  c[0].saturated = true;
  EXPECT_EQ(PlaceKnown("m", c, 3).index, 0);
  // No node left to spill to: the holder.
  c = {C("n1", kReady, 3), C("n2", kStopped, 0, true)};
  c[0].saturated = true;
  EXPECT_EQ(PlaceKnown("m", c, 2).index, 0);
}

TEST(PlacementTest, ReasonNames) {
  EXPECT_STREQ(ReasonName(Reason::kReady), "ready");
  EXPECT_STREQ(ReasonName(Reason::kStarting), "starting");
  EXPECT_STREQ(ReasonName(Reason::kCost), "cost");
  EXPECT_STREQ(ReasonName(Reason::kSpillover), "spillover");
  EXPECT_STREQ(ReasonName(Reason::kFailover), "failover");
}

}  // namespace
}  // namespace modelplane::proxy::cluster
