// Fakes of the actor's seams (env.h) for deterministic unit tests: a manual
// clock, a launcher whose processes the test makes print and exit, and a
// prober whose probes the test answers. No threads, no sleeps.
#ifndef MODELPLANE_SERVER_CORE_ACTOR_FAKE_ENV_H_
#define MODELPLANE_SERVER_CORE_ACTOR_FAKE_ENV_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/core/actor/env.h"

namespace modelplane::actor {

class FakeClock : public Clock {
 public:
  absl::Time Now() override { return now_; }

  std::unique_ptr<Timer> After(absl::Duration delay,
                               std::function<void()> fn) override {
    uint64_t id = next_id_++;
    timers_.emplace(std::make_pair(now_ + delay, id), std::move(fn));
    return std::make_unique<FakeTimer>(this, now_ + delay, id);
  }

  // Moves time forward, running every timer that comes due, in order.
  void Advance(absl::Duration d) {
    absl::Time end = now_ + d;
    while (!timers_.empty() && timers_.begin()->first.first <= end) {
      auto it = timers_.begin();
      now_ = it->first.first;
      std::function<void()> fn = std::move(it->second);
      timers_.erase(it);
      fn();
    }
    now_ = end;
  }

  size_t pending() const { return timers_.size(); }

 private:
  class FakeTimer : public Timer {
   public:
    FakeTimer(FakeClock* clock, absl::Time at, uint64_t id)
        : clock_(clock), key_(at, id) {}
    ~FakeTimer() override { clock_->timers_.erase(key_); }

   private:
    FakeClock* clock_;
    std::pair<absl::Time, uint64_t> key_;
  };

  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  uint64_t next_id_ = 0;
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> timers_;
};

// What the test sees of one spawned process, alive or not.
struct FakeProcessRecord {
  SpawnSpec spec;
  int pid = 0;
  ProcessObserver* observer = nullptr;
  std::vector<int> signals;  // Signals sent to its group, in order.
  bool destroyed = false;    // The Process object is gone.
  bool exited = false;

  void Print(absl::string_view text) { observer->OnOutput(text); }
  void Exit(ExitStatus status) {
    exited = true;
    observer->OnExit(status);
  }
};

class FakeLauncher : public Launcher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Spawn(
      const SpawnSpec& spec, ProcessObserver* observer) override {
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
    if (absl::Status s = Check(spec); !s.ok()) return s;
    auto record = std::make_shared<FakeProcessRecord>();
    record->spec = spec;
    record->pid = next_pid_++;
    record->observer = observer;
    spawned_.push_back(record);
    return std::make_unique<FakeProcess>(record);
  }

  absl::Status Check(const SpawnSpec& spec) override {
    ++checks_;
    auto it = spec.argv.empty() ? missing_.end() : missing_.find(spec.argv[0]);
    return it == missing_.end() ? absl::OkStatus() : it->second;
  }

  void FailNextSpawn(absl::Status status) { fail_next_ = std::move(status); }
  // Every spawn (and Check) of `argv0` fails with `status` from now on
  // (a binary that is not installed); OK makes it runnable again.
  void SetMissing(const std::string& argv0, absl::Status status) {
    if (status.ok()) {
      missing_.erase(argv0);
    } else {
      missing_[argv0] = std::move(status);
    }
  }
  int checks() const { return checks_; }
  const std::vector<std::shared_ptr<FakeProcessRecord>>& spawned() const {
    return spawned_;
  }
  FakeProcessRecord& last() { return *spawned_.back(); }

 private:
  class FakeProcess : public Process {
   public:
    explicit FakeProcess(std::shared_ptr<FakeProcessRecord> r)
        : record_(std::move(r)) {}
    ~FakeProcess() override { record_->destroyed = true; }
    int pid() const override { return record_->pid; }
    void SignalGroup(int sig) override { record_->signals.push_back(sig); }

   private:
    std::shared_ptr<FakeProcessRecord> record_;
  };

  int next_pid_ = 1000;
  int checks_ = 0;
  absl::Status fail_next_;
  std::map<std::string, absl::Status> missing_;
  std::vector<std::shared_ptr<FakeProcessRecord>> spawned_;
};

class FakeProber : public HealthProber {
 public:
  struct Pending {
    std::string url;
    absl::Duration timeout;
    std::function<void(absl::StatusOr<int>)> done;
    bool cancelled = false;
  };

  std::unique_ptr<Probe> Get(
      const std::string& url, const ProbeTrust&, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) override {
    auto p = std::make_shared<Pending>(Pending{url, timeout, std::move(done)});
    pending_.push_back(p);
    ++total_;
    return std::make_unique<FakeProbe>(p);
  }
  // A POST is pending like a probe, its URL prefixed "POST " (answer it
  // with AnswerUrl("POST ...")).
  std::unique_ptr<Probe> Post(
      const std::string& url, const ProbeTrust& trust, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) override {
    return Get("POST " + url, trust, timeout, std::move(done));
  }

  // Probes started and neither answered nor cancelled.
  int in_flight() const {
    int n = 0;
    for (const auto& p : pending_) n += p->cancelled ? 0 : 1;
    return n;
  }
  int total() const { return total_; }
  const std::string& last_url() const { return pending_.back()->url; }

  // Answers the oldest live probe whose URL contains `url_part`.
  bool AnswerUrl(const std::string& url_part, absl::StatusOr<int> result) {
    for (size_t i = 0; i < pending_.size(); ++i) {
      std::shared_ptr<Pending> p = pending_[i];
      if (p->cancelled || p->url.find(url_part) == std::string::npos) continue;
      pending_.erase(pending_.begin() + i);
      p->cancelled = true;
      p->done(std::move(result));
      return true;
    }
    return false;
  }

  // Answers the oldest live probe. Returns false if there is none.
  bool Answer(absl::StatusOr<int> result) {
    while (!pending_.empty()) {
      std::shared_ptr<Pending> p = pending_.front();
      pending_.erase(pending_.begin());
      if (p->cancelled) continue;
      p->cancelled = true;  // Answered: a later cancel is a no-op.
      p->done(std::move(result));
      return true;
    }
    return false;
  }

 private:
  class FakeProbe : public Probe {
   public:
    explicit FakeProbe(std::shared_ptr<Pending> p) : p_(std::move(p)) {}
    ~FakeProbe() override { p_->cancelled = true; }

   private:
    std::shared_ptr<Pending> p_;
  };

  std::vector<std::shared_ptr<Pending>> pending_;
  int total_ = 0;
};

}  // namespace modelplane::actor

#endif  // MODELPLANE_SERVER_CORE_ACTOR_FAKE_ENV_H_
