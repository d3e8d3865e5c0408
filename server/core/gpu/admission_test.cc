#include "server/core/gpu/admission.h"

#include "gtest/gtest.h"

namespace modelplane::gpu {
namespace {

constexpr uint64_t kGiB = 1024ULL * 1024 * 1024;
using Kind = Decision::Kind;

GpuState Gpu(int index, uint64_t total_gib, uint64_t used_bytes = 0) {
  GpuState g;
  g.index = index;
  g.total = total_gib * kGiB;
  g.used = used_bytes;
  return g;
}

Resident On(std::string id, Resident::Kind kind, int gpu, uint64_t gib,
            bool allocated, int last_used_s = 0) {
  Resident r;
  r.id = std::move(id);
  r.kind = kind;
  r.gpus = {gpu};
  r.footprint = gib * kGiB;
  if (allocated) r.used[gpu] = gib * kGiB;
  r.last_used = absl::FromUnixSeconds(last_used_s);
  return r;
}

Request Want(uint64_t gib, std::vector<int> allowed = {}, int count = 1) {
  return Request{"t", gib * kGiB, std::move(allowed), count};
}

// The GPU's NVML figure: what the residents allocated, plus `other`.
GpuState Seen(GpuState g, const std::vector<Resident>& rs, uint64_t other = 0) {
  g.used = other;
  for (const Resident& r : rs) {
    auto it = r.used.find(g.index);
    if (it != r.used.end()) g.used += it->second;
  }
  return g;
}

TEST(AdmissionTest, AdmitsWhatFitsBesideTheReserve) {
  std::vector<Resident> rs = {On("a", Resident::Kind::kBusy, 0, 8, true)};
  // 20 GiB less 5 %: 19 GiB usable, 8 held: 11 free.
  Decision d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(11), 0.05);
  EXPECT_EQ(d.kind, Kind::kAdmit) << d.why;
  EXPECT_EQ(d.gpus, std::vector<int>{0});
  d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(12), 0.05);
  EXPECT_EQ(d.kind, Kind::kWait) << "only a busy model holds the rest";
  EXPECT_NE(d.why.find("busy a"), std::string::npos) << d.why;
}

// Past its maxQueueWait a start may have busy models evicted (their leases
// revoked): after every idle one, least recently used first; a start in
// progress never, nor one not revocable.
TEST(AdmissionTest, AnOverdueStartTakesBusyModelsAfterTheIdleOnes) {
  Resident held_old = On("old", Resident::Kind::kBusy, 0, 6, true, 1);
  held_old.revocable = true;
  Resident held_new = On("new", Resident::Kind::kBusy, 0, 6, true, 5);
  held_new.revocable = true;
  Resident idle = On("idle", Resident::Kind::kIdle, 0, 2, true, 9);
  std::vector<Resident> rs = {held_new, held_old, idle};
  // 20 GiB less 5 %: 19 usable, 14 held: 5 free; 9 wanted.
  Decision d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(9), 0.05);
  EXPECT_EQ(d.kind, Kind::kWait) << "not overdue: busy models stay";
  Request overdue = Want(9);
  overdue.overdue = true;
  d = Decide({Seen(Gpu(0, 20), rs)}, rs, overdue, 0.05);
  ASSERT_EQ(d.kind, Kind::kEvict) << d.why;
  EXPECT_EQ(d.victims, (std::vector<std::string>{"idle", "old"}));
  // A start in progress (busy, not revocable) is never taken.
  std::vector<Resident> starting = {
      On("s", Resident::Kind::kBusy, 0, 14, false)};
  d = Decide({Seen(Gpu(0, 20), starting)}, starting, overdue, 0.05);
  EXPECT_EQ(d.kind, Kind::kWait);
}

TEST(AdmissionTest, AStartingModelHoldsItsFootprintBeforeItAllocates) {
  std::vector<Resident> rs = {On("a", Resident::Kind::kBusy, 0, 8, false)};
  Decision d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(12), 0.05);
  EXPECT_EQ(d.kind, Kind::kWait);
}

TEST(AdmissionTest, EvictsIdleModelsLeastRecentlyUsedFirstUntilItFits) {
  std::vector<Resident> rs = {
      On("old", Resident::Kind::kIdle, 0, 6, true, /*last_used_s=*/10),
      On("new", Resident::Kind::kIdle, 0, 6, true, /*last_used_s=*/20),
      On("busy", Resident::Kind::kBusy, 0, 6, true, /*last_used_s=*/1)};
  // 20 GiB: 19 usable, 18 held, 1 free; 6 needed: one idle model goes.
  Decision d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(6), 0.05);
  ASSERT_EQ(d.kind, Kind::kEvict);
  EXPECT_EQ(d.victims, std::vector<std::string>{"old"});
  // 12 needed: both idle ones, never the busy one.
  d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(12), 0.05);
  ASSERT_EQ(d.kind, Kind::kEvict);
  EXPECT_EQ(d.victims, (std::vector<std::string>{"new", "old"}));
  // 14 needed: even both idle ones (13 free then) are not enough: wait,
  // evict nothing.
  d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(14), 0.05);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(d.victims.empty());
}

TEST(AdmissionTest, TiesInRecencyGoToTheQuickestToStartAgain) {
  Resident slow = On("slow", Resident::Kind::kIdle, 0, 6, true, 10);
  slow.start_time = absl::Seconds(30);
  Resident quick = On("quick", Resident::Kind::kIdle, 0, 6, true, 10);
  quick.start_time = absl::Seconds(2);
  std::vector<Resident> rs = {slow, quick};
  Decision d = Decide({Seen(Gpu(0, 13), rs)}, rs, Want(6), 0.0);
  ASSERT_EQ(d.kind, Kind::kEvict);
  EXPECT_EQ(d.victims, std::vector<std::string>{"quick"});
}

TEST(AdmissionTest, MemoryComingFreeIsWaitedForNotEvictedFor) {
  std::vector<Resident> rs = {
      On("leaving", Resident::Kind::kLeaving, 0, 10, true),
      On("idle", Resident::Kind::kIdle, 0, 5, true)};
  Decision d = Decide({Seen(Gpu(0, 20), rs)}, rs, Want(10), 0.0);
  EXPECT_EQ(d.kind, Kind::kWait) << "the leaving model frees enough";
  EXPECT_TRUE(d.victims.empty());
  // A stopped model's memory the driver still holds: NVML's used counts
  // it, no resident owns it; `releasing` says it is coming back.
  GpuState g = Seen(Gpu(0, 20), {}, /*other=*/15 * kGiB);
  g.releasing = 15 * kGiB;
  d = Decide({g}, {}, Want(10), 0.0);
  EXPECT_EQ(d.kind, Kind::kWait);
  g.releasing = 0;  // Back (NVML agrees): the GPU is admissible again.
  g.used = 0;
  d = Decide({g}, {}, Want(10), 0.0);
  EXPECT_EQ(d.kind, Kind::kAdmit);
}

TEST(AdmissionTest, AnUntrustedGpuAdmitsNothing) {
  GpuState g = Gpu(0, 20);
  g.trusted = false;
  Decision d = Decide({g}, {}, Want(1), 0.0);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_NE(d.why.find("stopped model's memory"), std::string::npos) << d.why;
  // Another GPU takes it instead.
  d = Decide({g, Gpu(1, 20)}, {}, Want(1), 0.0);
  EXPECT_EQ(d.kind, Kind::kAdmit);
  EXPECT_EQ(d.gpus, std::vector<int>{1});
}

TEST(AdmissionTest, AnotherProgramsMemoryCounts) {
  Decision d = Decide({Gpu(0, 20, /*used_bytes=*/15 * kGiB)}, {}, Want(6), 0.0);
  EXPECT_EQ(d.kind, Kind::kWait);
}

TEST(AdmissionTest, TooLargeForItsGpusIsNever) {
  Decision d = Decide({Gpu(0, 20), Gpu(1, 40)}, {}, Want(30, {0}), 0.05);
  EXPECT_EQ(d.kind, Kind::kNever);
  EXPECT_NE(d.why.find("GPU 0 19456 MiB"), std::string::npos) << d.why;
  d = Decide({Gpu(0, 20)}, {}, Want(1, {}, 2), 0.05);
  EXPECT_EQ(d.kind, Kind::kNever);
}

TEST(AdmissionTest, PlacesOnTheGpuWithTheMostFreeMemory) {
  std::vector<Resident> rs = {On("a", Resident::Kind::kBusy, 0, 4, true),
                              On("b", Resident::Kind::kBusy, 1, 2, true)};
  std::vector<GpuState> gpus = {Seen(Gpu(0, 20), rs), Seen(Gpu(1, 20), rs),
                                Seen(Gpu(2, 20), rs, 3 * kGiB)};
  Decision d = Decide(gpus, rs, Want(4), 0.0);
  ASSERT_EQ(d.kind, Kind::kAdmit);
  EXPECT_EQ(d.gpus, std::vector<int>{1});
  d = Decide(gpus, rs, Want(4, {0, 2}), 0.0);
  EXPECT_EQ(d.gpus, std::vector<int>{2});
  d = Decide(gpus, rs, Want(4, {}, 2), 0.0);
  EXPECT_EQ(d.gpus, (std::vector<int>{1, 2}));
}

TEST(AdmissionTest, PrefersAGpuThatNeedsNoEviction) {
  std::vector<Resident> rs = {On("a", Resident::Kind::kIdle, 0, 18, true)};
  std::vector<GpuState> gpus = {Seen(Gpu(0, 20), rs), Seen(Gpu(1, 10), rs)};
  Decision d = Decide(gpus, rs, Want(8), 0.0);
  ASSERT_EQ(d.kind, Kind::kAdmit);
  EXPECT_EQ(d.gpus, std::vector<int>{1});
  d = Decide(gpus, rs, Want(12), 0.0);  // Only GPU 0 is large enough.
  ASSERT_EQ(d.kind, Kind::kEvict);
  EXPECT_EQ(d.victims, std::vector<std::string>{"a"});
  EXPECT_EQ(d.gpus, std::vector<int>{0});
}

}  // namespace
}  // namespace modelplane::gpu
