#include "proxy/lease/lease_broker.h"

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::lease {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class FakeTransport : public LeaseTransport {
 public:
  bool Connected() override { return connected; }
  void SendAcquire(const std::string& model, uint64_t attempt) override {
    sent.push_back("acquire " + model);
    last_attempt = attempt;
  }
  void SendCancel(const std::string& model) override {
    sent.push_back("cancel " + model);
  }
  uint64_t last_attempt = 0;
  void SendRelease(const std::string& model, uint64_t lease,
                   absl::Time) override {
    sent.push_back(absl::StrCat("release ", model, " ", lease));
  }
  bool connected = true;
  std::vector<std::string> sent;
};

class LeaseBrokerTest : public ::testing::Test {
 protected:
  LeaseBrokerTest()
      : broker_(
            &transport_,
            [this](absl::Duration d, std::function<void()> fn) {
              timers_.push_back({d, std::move(fn)});
            },
            absl::Seconds(1), [this] { return now_; }) {}

  // Admits with a post that queues, like a worker loop; returns a label the
  // answer is recorded under.
  uint64_t Admit(const std::string& model, int limit = 10) {
    return broker_.Admit(
        model, limit,
        [this](std::function<void()> fn) { posted_.push_back(std::move(fn)); },
        [this](absl::StatusOr<Lease> r) {
          answers_.push_back(r.ok() ? "lease " + r->model + " " + r->upstream
                                    : std::string(absl::StatusCodeToString(
                                          r.status().code())));
        });
  }
  void RunPosted() {
    auto p = std::move(posted_);
    posted_.clear();
    for (auto& fn : p) fn();
  }
  // Moves the clock by `advance`, then runs the timers armed so far.
  void FireTimers(absl::Duration advance = absl::Hours(1)) {
    now_ += advance;
    auto t = std::move(timers_);
    timers_.clear();
    for (auto& [delay, fn] : t) fn();
  }

  FakeTransport transport_;
  absl::Time now_ = absl::FromUnixSeconds(1000000);
  std::vector<std::pair<absl::Duration, std::function<void()>>> timers_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::string> answers_;
  LeaseBroker broker_;
};

TEST_F(LeaseBrokerTest, OneAcquireThenAThousandRequestsWithNoControlPlaneCall) {
  Admit("qwen");
  Admit("qwen");
  EXPECT_THAT(transport_.sent, ElementsAre("acquire qwen"));
  EXPECT_THAT(answers_, IsEmpty());
  broker_.OnGranted("qwen", 7, "http://127.0.0.1:5800");
  RunPosted();
  EXPECT_THAT(answers_, ElementsAre("lease qwen http://127.0.0.1:5800",
                                    "lease qwen http://127.0.0.1:5800"));
  broker_.Finish("qwen");
  broker_.Finish("qwen");
  for (int i = 0; i < 1000; ++i) {
    Admit("qwen");
    broker_.Finish("qwen");
  }
  EXPECT_EQ(answers_.size(), 1002u);  // All inline: the lease is held.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire qwen"));
}

TEST_F(LeaseBrokerTest, ALeaseSaysHowLongTheModelLoadedForItsRequest) {
  std::vector<absl::Duration> loading;
  auto admit = [&] {
    broker_.Admit(
        "qwen", 10, [](std::function<void()> fn) { fn(); },
        [&](absl::StatusOr<Lease> r) {
          ASSERT_TRUE(r.ok());
          loading.push_back(r->loading);
        });
  };
  admit();  // Queued behind a swap 2 s...
  now_ += absl::Seconds(2);
  broker_.OnStarting("qwen");  // ... then loading 3 s;
  now_ += absl::Seconds(1);
  admit();  // one more joins the loading.
  now_ += absl::Seconds(2);
  broker_.OnGranted("qwen", 1, "u");
  EXPECT_THAT(loading, ElementsAre(absl::Seconds(3), absl::Seconds(2)));
  broker_.Finish("qwen");
  broker_.Finish("qwen");
  admit();  // Held: no wait at all.
  EXPECT_EQ(loading.back(), absl::ZeroDuration());
  broker_.Finish("qwen");
  // A grant with no STARTING (the model was ready): no loading.
  broker_.OnRevoked("qwen", 1);
  FireTimers();
  loading.clear();
  admit();
  broker_.OnGranted("qwen", 2, "u");
  EXPECT_THAT(loading, ElementsAre(absl::ZeroDuration()));
}

TEST_F(LeaseBrokerTest, OldestWaitIsTheLongestARequestHasWaited) {
  EXPECT_EQ(broker_.OldestWait("qwen"), absl::ZeroDuration());
  Admit("qwen");
  now_ += absl::Milliseconds(300);
  uint64_t second = Admit("qwen");
  now_ += absl::Milliseconds(200);
  EXPECT_EQ(broker_.OldestWait("qwen"), absl::Milliseconds(500));
  EXPECT_EQ(broker_.OldestWait("other"), absl::ZeroDuration());
  broker_.Withdraw("qwen", second);
  EXPECT_EQ(broker_.OldestWait("qwen"), absl::Milliseconds(500));
  broker_.OnGranted("qwen", 7, "http://127.0.0.1:5800");
  RunPosted();
  EXPECT_EQ(broker_.OldestWait("qwen"), absl::ZeroDuration());  // None waits.
}

TEST_F(LeaseBrokerTest, ARequestWhoseClientLeftIsWithdrawnAtOnce) {
  uint64_t a = Admit("m");
  uint64_t b = Admit("m");
  std::map<std::string, int> in_flight, queued;
  broker_.Loads(&in_flight, &queued);
  EXPECT_EQ(queued["m"], 2);
  broker_.Withdraw("m", a);
  in_flight.clear();
  queued.clear();
  broker_.Loads(&in_flight, &queued);
  EXPECT_EQ(queued["m"], 1);
  EXPECT_EQ(broker_.Position("m", b), 1);
  // Someone still waits: the ACQUIRE stays.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));
  broker_.Withdraw("m", b);
  // Nobody waits: the manager is told, so it starts and evicts nothing.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "cancel m"));
  broker_.Loads(&in_flight, &queued);
  EXPECT_EQ(queued["m"], 0);
  broker_.Withdraw("m", b);  // Twice, or after an answer: nothing.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "cancel m"));
  RunPosted();
  EXPECT_THAT(answers_, IsEmpty());  // Withdrawn requests hear nothing.
}

TEST_F(LeaseBrokerTest, TheCancelledAcquiresAnswerDoesNotFailTheNextOne) {
  broker_.Withdraw("m", Admit("m"));
  uint64_t cancelled = transport_.last_attempt;
  Admit("m");  // A new request: a new ACQUIRE.
  EXPECT_THAT(transport_.sent,
              ElementsAre("acquire m", "cancel m", "acquire m"));
  EXPECT_NE(transport_.last_attempt, cancelled);
  // The manager answers the cancelled one (CANCELLED) after the new one
  // went out: it is not this request's answer.
  broker_.OnFailed("m", cancelled,
                   absl::CancelledError("cancelled by RELEASE"));
  RunPosted();
  EXPECT_THAT(answers_, IsEmpty());
  broker_.OnGranted("m", 3, "u");
  RunPosted();
  EXPECT_THAT(answers_, ElementsAre("lease m u"));
}

TEST_F(LeaseBrokerTest, AGrantForAWithdrawnAcquireLingersOut) {
  broker_.Withdraw("m", Admit("m"));
  broker_.OnGranted("m", 4, "u");  // Was on its way.
  FireTimers();
  EXPECT_THAT(transport_.sent,
              ElementsAre("acquire m", "cancel m", "release m 4"));
}

TEST_F(LeaseBrokerTest, IdleLeaseIsReleasedAfterTheLingerUnlessUsedAgain) {
  Admit("m");
  broker_.OnGranted("m", 1, "u");
  RunPosted();
  broker_.Finish("m");
  Admit("m");  // Before the linger fires: the pending release is cancelled.
  FireTimers();
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));
  broker_.Finish("m");
  FireTimers();
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 1"));
  Admit("m");  // Released: a new lease is needed.
  EXPECT_THAT(transport_.sent.back(), "acquire m");
}

TEST_F(LeaseBrokerTest, OneLingerCheckPerIdlePeriodNotPerRequest) {
  Admit("m");
  broker_.OnGranted("m", 1, "u");
  RunPosted();
  broker_.Finish("m");
  for (int i = 0; i < 100; ++i) {
    now_ += absl::Milliseconds(3);
    Admit("m");
    broker_.Finish("m");
  }
  ASSERT_EQ(timers_.size(), 1u);  // Not one per request.
  EXPECT_EQ(timers_[0].first, absl::Seconds(1));
  // Fires 1 s after it was armed: the model was last used 0.7 s ago, so the
  // check comes back for the 0.3 s left instead of releasing.
  FireTimers(absl::Seconds(1) - absl::Milliseconds(300));
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));
  ASSERT_EQ(timers_.size(), 1u);
  EXPECT_EQ(timers_[0].first, absl::Milliseconds(300));
  FireTimers(absl::Milliseconds(300));
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 1"));
  EXPECT_THAT(timers_, IsEmpty());
}

// The linger check runs from the grant on and re-arms itself while the
// lease is busy: a request finishing (the last one out included) arms
// nothing and takes no lock; the check reads when the last one ended.
TEST_F(LeaseBrokerTest, ALingerCheckFindingRequestsInFlightChecksAgainLater) {
  Admit("m");
  broker_.OnGranted("m", 1, "u");
  RunPosted();
  ASSERT_EQ(timers_.size(), 1u);  // Armed at the grant, busy or not.
  broker_.Finish("m");
  EXPECT_EQ(timers_.size(), 1u);  // The last one out arms nothing.
  Admit("m");
  FireTimers();  // In flight: no release; checked again a linger later.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));
  ASSERT_EQ(timers_.size(), 1u);
  EXPECT_EQ(timers_[0].first, absl::Seconds(1));
  broker_.Finish("m");
  EXPECT_EQ(timers_.size(), 1u);
  FireTimers(absl::Milliseconds(400));  // Ended 400 ms ago: not yet.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));
  ASSERT_EQ(timers_.size(), 1u);
  EXPECT_EQ(timers_[0].first, absl::Milliseconds(600));
  FireTimers(absl::Milliseconds(600));
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 1"));
  EXPECT_THAT(timers_, IsEmpty());
}

TEST_F(LeaseBrokerTest, ACheckLeftFromAnEarlierLeaseDoesNotCutANewOneShort) {
  Admit("m");
  broker_.OnGranted("m", 1, "u");
  RunPosted();
  broker_.Finish("m");        // Idle: a check is armed for 1 s from now.
  broker_.OnRevoked("m", 1);  // Released at once (idle).
  now_ += absl::Milliseconds(900);
  broker_.OnGranted("m", 2, "u");       // A new lease, idle from now.
  FireTimers(absl::Milliseconds(100));  // The old check comes due.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 1"));
  ASSERT_EQ(timers_.size(), 1u);
  EXPECT_EQ(timers_[0].first, absl::Milliseconds(900));
  FireTimers(absl::Milliseconds(900));
  EXPECT_THAT(transport_.sent,
              ElementsAre("acquire m", "release m 1", "release m 2"));
}

TEST_F(LeaseBrokerTest, RevokedLeaseDrainsReleasesAndReacquiresForWaiters) {
  Admit("m");
  broker_.OnGranted("m", 3, "u");
  RunPosted();
  broker_.OnRevoked("m", 3);
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m"));  // One in flight.
  Admit("m");  // Waits for a new lease.
  EXPECT_EQ(answers_.size(), 1u);
  broker_.Finish("m");
  EXPECT_THAT(transport_.sent,
              ElementsAre("acquire m", "release m 3", "acquire m"));
  broker_.OnGranted("m", 4, "u2");
  RunPosted();
  EXPECT_EQ(answers_.back(), "lease m u2");
}

TEST_F(LeaseBrokerTest, WatchersAreToldWhenTheLeaseGoes) {
  auto post = [this](std::function<void()> fn) {
    posted_.push_back(std::move(fn));
  };
  std::vector<std::string> told;
  Admit("m");
  broker_.OnGranted("m", 3, "u");
  RunPosted();  // A tunnel holds the lease (one in flight).
  uint64_t a = broker_.WatchLease("m", post, [&] { told.push_back("a"); });
  uint64_t b = broker_.WatchLease("m", post, [&] { told.push_back("b"); });
  EXPECT_NE(a, 0u);
  broker_.Unwatch("m", b);  // Its tunnel ended first.
  RunPosted();
  EXPECT_TRUE(told.empty());
  broker_.OnRevoked("m", 3);
  EXPECT_TRUE(told.empty());  // Through the watcher's loop.
  RunPosted();
  EXPECT_THAT(told, ElementsAre("a"));
  // The lease is revoked: a new watcher is told at once.
  EXPECT_EQ(broker_.WatchLease("m", post, [&] { told.push_back("c"); }), 0u);
  RunPosted();
  EXPECT_THAT(told, ElementsAre("a", "c"));
  broker_.Finish("m");  // The tunnel closed: released.
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 3"));

  // A broken stream tells every model's watchers.
  Admit("n");
  broker_.OnGranted("n", 4, "u");
  RunPosted();
  broker_.WatchLease("n", post, [&] { told.push_back("d"); });
  broker_.OnDisconnected();
  RunPosted();
  EXPECT_THAT(told, ElementsAre("a", "c", "d"));
}

TEST_F(LeaseBrokerTest, IdleHolderReleasesAtOnceOnRevoke) {
  Admit("m");
  broker_.OnGranted("m", 5, "u");
  RunPosted();
  broker_.Finish("m");
  broker_.OnRevoked("m", 5);
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "release m 5"));
  broker_.OnRevoked("m", 5);  // A duplicate changes nothing.
  EXPECT_EQ(transport_.sent.size(), 2u);
}

TEST_F(LeaseBrokerTest, ConcurrencyLimitAcrossTheProcess) {
  Admit("m", 2);
  Admit("m", 2);
  Admit("m", 2);
  broker_.OnGranted("m", 1, "u");
  RunPosted();
  EXPECT_THAT(answers_,
              ElementsAre("lease m u", "lease m u", "RESOURCE_EXHAUSTED"));
  Admit("m", 2);
  EXPECT_EQ(answers_.back(), "RESOURCE_EXHAUSTED");
  broker_.Finish("m");
  Admit("m", 2);
  EXPECT_EQ(answers_.back(), "lease m u");
  EXPECT_EQ(broker_.InFlight("m"), 2);
}

TEST_F(LeaseBrokerTest, ManagerDownFailsFastAndHeldLeasesEnd) {
  Admit("m");
  broker_.OnDisconnected();
  RunPosted();
  EXPECT_THAT(answers_, ElementsAre("UNAVAILABLE"));
  transport_.connected = false;
  Admit("m");
  EXPECT_EQ(answers_.back(), "UNAVAILABLE");  // Inline: no hang.
  transport_.connected = true;
  Admit("m");
  EXPECT_EQ(transport_.sent.back(), "acquire m");
}

TEST_F(LeaseBrokerTest, FailedAcquireAnswersWaitersAndTheNextRequestRetries) {
  Admit("m");
  broker_.OnFailed("m", absl::FailedPreconditionError("CUDA out of memory"));
  RunPosted();
  EXPECT_THAT(answers_, ElementsAre("FAILED_PRECONDITION"));
  Admit("m");
  EXPECT_THAT(transport_.sent, ElementsAre("acquire m", "acquire m"));
}

TEST_F(LeaseBrokerTest, WaitingRequestsKnowTheirPlace) {
  uint64_t first = Admit("m");
  uint64_t second = Admit("m");
  uint64_t other = Admit("n");
  EXPECT_NE(first, 0u);
  EXPECT_EQ(broker_.Position("m", first), 1);
  EXPECT_EQ(broker_.Position("m", second), 2);
  EXPECT_EQ(broker_.Position("n", other), 1);
  broker_.OnGranted("m", 7, "http://127.0.0.1:1");
  EXPECT_EQ(broker_.Position("m", first), 0);  // Admitted: no longer waits.
  RunPosted();
  // Held: answered inline, no ticket.
  EXPECT_EQ(Admit("m"), 0u);
}

// Workers admit and finish on their own threads (no lock on a held lease)
// while the manager's side grants, revokes, drops the stream and runs the
// linger checks: a lease is never released while a request admitted under it
// is in flight, no request is admitted under a lease already released, and
// every request is answered.
class ThreadedTransport : public LeaseTransport {
 public:
  bool Connected() override { return true; }
  void SendAcquire(const std::string&, uint64_t) override {
    acquires.fetch_add(1);
  }
  void SendCancel(const std::string&) override {}
  void SendRelease(const std::string&, uint64_t lease, absl::Time) override {
    absl::MutexLock lock(&mu);
    if (in_flight[lease] != 0) ++violations;
    released.insert(lease);
  }
  std::atomic<int> acquires{0};
  absl::Mutex mu;
  std::map<uint64_t, int> in_flight ABSL_GUARDED_BY(mu);
  std::set<uint64_t> released ABSL_GUARDED_BY(mu);
  int violations ABSL_GUARDED_BY(mu) = 0;
};

TEST(LeaseBrokerThreadsTest, NoReleaseWhileARequestOfTheLeaseIsInFlight) {
  ThreadedTransport transport;
  absl::Mutex timers_mu;
  std::vector<std::function<void()>> timers;  // Run by the manager thread.
  // Linger 0: an idle lease goes at its first check, racing new requests.
  LeaseBroker broker(
      &transport,
      [&](absl::Duration, std::function<void()> fn) {
        absl::MutexLock lock(&timers_mu);
        timers.push_back(std::move(fn));
      },
      absl::ZeroDuration());
  std::atomic<int> done{0}, admitted{0};
  // A request: admitted under lease N (its upstream says N), in flight in
  // the transport's books for a few yields, then finished.
  std::function<void()> request = [&] {
    broker.Admit(
        "m", 1 << 30, [](std::function<void()> fn) { fn(); },
        [&](absl::StatusOr<Lease> r) {
          if (r.ok()) {
            uint64_t lease = std::stoull(r->upstream.substr(9));
            {
              absl::MutexLock lock(&transport.mu);
              if (transport.released.count(lease) != 0) ++transport.violations;
              ++transport.in_flight[lease];
            }
            admitted.fetch_add(1);
            for (int i = 0; i < 3; ++i) std::this_thread::yield();
            {
              absl::MutexLock lock(&transport.mu);
              --transport.in_flight[lease];
            }
            broker.Finish("m");
          }
          done.fetch_add(1);
        });
  };
  constexpr int kPerWorker = 20000;
  std::atomic<bool> stop{false};
  std::thread manager([&] {
    uint64_t lease = 0;
    int seen = 0;
    while (!stop.load()) {
      std::vector<std::function<void()>> due;
      {
        absl::MutexLock lock(&timers_mu);
        due.swap(timers);
      }
      for (auto& fn : due) fn();
      // Answer each ACQUIRE with a new lease; revoke it soon after, or
      // now and then lose the stream instead.
      if (transport.acquires.load() > seen) {
        ++seen;
        ++lease;
        broker.OnGranted("m", lease, absl::StrCat("http://h/", lease));
        for (int i = 0; i < 200 && !stop.load(); ++i) std::this_thread::yield();
        if (lease % 10 == 0) {
          broker.OnDisconnected();
        } else {
          broker.OnRevoked("m", lease);
        }
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < kPerWorker; ++i) request();
    });
  }
  for (std::thread& t : workers) t.join();
  // Waiters left at the end are answered by the next grant (or the stream's
  // loss); bounded, so a lost answer fails instead of hanging.
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (done.load() < 2 * kPerWorker && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  stop.store(true);
  manager.join();
  EXPECT_EQ(done.load(), 2 * kPerWorker);
  absl::MutexLock lock(&transport.mu);
  EXPECT_EQ(transport.violations, 0);
  EXPECT_GT(admitted.load(), kPerWorker);  // Most get in; a lost stream
                                           // answers its waiters Unavailable.
  EXPECT_FALSE(transport.released.empty());
}

}  // namespace
}  // namespace modelplane::proxy::lease
