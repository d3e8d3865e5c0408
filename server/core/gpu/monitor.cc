#include "server/core/gpu/monitor.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace modelplane::gpu {
namespace {

// The process group of `pid` (field 5 of /proc/<pid>/stat), or 0.
int ReadGroup(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream rest(text.substr(paren + 1));
  std::string state;
  int ppid = 0, pgrp = 0;
  rest >> state >> ppid >> pgrp;
  return pgrp;
}

std::string Mib(uint64_t bytes) { return absl::StrCat(bytes / kMiB, " MiB"); }

// Past the wait, how long an untrusted GPU waits for the memory before it
// is taken as lost.
constexpr absl::Duration kGiveUpAfter = absl::Seconds(30);

}  // namespace

Monitor::Monitor(std::unique_ptr<GpuSource> source, actor::Clock* clock,
                 MonitorOptions options)
    : source_(std::move(source)), clock_(clock), options_(std::move(options)) {
  Load();
  Refresh(absl::ZeroDuration());
  std::vector<std::string> gpus;
  for (const GpuInfo& g : snapshot_.gpus) {
    gpus.push_back(absl::StrCat(g.index, ": ", g.name, ", ", Mib(g.total_bytes),
                                " (", Mib(g.used_bytes), " in use)"));
  }
  Log("info", absl::StrCat("GPU memory scheduling on: ", gpus.size(),
                           " GPU(s) found by NVML", gpus.empty() ? "" : ": ",
                           absl::StrJoin(gpus, "; ")));
  Arm();
}

Monitor::~Monitor() = default;

void Monitor::Log(const std::string& level, const std::string& line) {
  if (options_.log) options_.log(level, line);
}

void Monitor::Arm() {
  timer_ = clock_->After(options_.poll, [this] {
    Refresh(absl::ZeroDuration());
    if (on_poll_) on_poll_();
    if (after_poll_) after_poll_();
    Arm();
  });
}

void Monitor::Refresh(absl::Duration max_age) {
  absl::Time now = clock_->Now();
  if (now - read_at_ < max_age) return;
  absl::StatusOr<GpuSnapshot> snap = source_->Read();
  read_at_ = now;
  if (!snap.ok()) {
    std::string why(snap.status().message());
    if (why != read_error_) Log("warn", "NVML read failed: " + why);
    read_error_ = why;
    CheckReleases(now, /*fresh=*/false);  // Keep the last snapshot.
    return;
  }
  read_error_.clear();
  for (const GpuInfo& g : snapshot_.gpus)
    other_before_[g.index] = Other(g.index);
  snapshot_ = *std::move(snap);
  groups_.clear();
  for (const GpuProcess& p : snapshot_.processes) {
    if (groups_.count(p.pid) == 0) {
      groups_[p.pid] =
          options_.group_of ? options_.group_of(p.pid) : ReadGroup(p.pid);
    }
  }
  CheckReleases(now, /*fresh=*/true);
}

bool Monitor::GroupListed(int group, int gpu) const {
  if (group <= 0) return false;
  for (const GpuProcess& p : snapshot_.processes) {
    if (p.gpu != gpu) continue;
    auto g = groups_.find(p.pid);
    if (p.pid == group || (g != groups_.end() && g->second == group)) {
      return true;
    }
  }
  return false;
}

void Monitor::CheckReleases(absl::Time now, bool fresh) {
  for (auto it = releases_.begin(); it != releases_.end();) {
    uint64_t other = Other(it->gpu);
    // Back when no process of its group is listed any more and at most
    // 10 % of its memory is held by no process. Only a fresh read says so.
    bool back = fresh && !GroupListed(it->group, it->gpu) &&
                other <= it->other_before + it->bytes / 10;
    // Memory a driver never gives back is taken as lost, past a second
    // bound: it counts as another program's from then on.
    bool lost = it->timed_out && now >= it->give_up;
    if (back || lost) {
      int gpu = it->gpu;
      bool was_timed_out = it->timed_out;
      if (back && !was_timed_out) {
        // The wait a start behind it had (tools/gpu_check.sh reports it).
        Log("info",
            absl::StrCat("GPU ", gpu, ": a stopped model's ", Mib(it->bytes),
                         " came back in ",
                         absl::ToInt64Milliseconds(now - it->since), " ms"));
      }
      it = releases_.erase(it);
      if (!was_timed_out || !Trusted(gpu)) continue;
      Log(back ? "info" : "warn",
          back ? absl::StrCat("GPU ", gpu,
                              ": the stopped model's memory is back; starts "
                              "go there again")
               : absl::StrCat("GPU ", gpu, ": ", Mib(other),
                              " held by no process is taken as lost; starts "
                              "go there again, counting it as used"));
      continue;
    }
    if (!it->timed_out && now >= it->deadline) {
      it->timed_out = true;
      ++wait_timeouts_[it->gpu];
      Log("warn",
          absl::StrCat("GPU ", it->gpu, ": the driver has not given back ",
                       Mib(it->bytes), " of a stopped model (", Mib(other),
                       " held by no process", fresh ? "" : ", NVML unreadable",
                       "); no start goes there until it is back"));
    }
    ++it;
  }
}

uint64_t Monitor::Other(int gpu) const {
  uint64_t used = 0, listed = 0;
  for (const GpuInfo& g : snapshot_.gpus) {
    if (g.index == gpu) used = g.used_bytes;
  }
  for (const GpuProcess& p : snapshot_.processes) {
    if (p.gpu == gpu) listed += p.used_bytes;
  }
  return used > listed ? used - listed : 0;
}

bool Monitor::Trusted(int gpu) const {
  for (const Release& r : releases_) {
    if (r.gpu == gpu && r.timed_out) return false;
  }
  return true;
}

std::vector<GpuState> Monitor::Gpus() {
  std::vector<GpuState> out;
  for (const GpuInfo& g : snapshot_.gpus) {
    GpuState s;
    s.index = g.index;
    s.total = g.total_bytes;
    s.used = g.used_bytes;
    s.trusted = Trusted(g.index);
    for (const Release& r : releases_) {
      if (r.gpu == g.index && !r.timed_out) s.releasing += r.bytes;
    }
    out.push_back(s);
  }
  return out;
}

std::map<int, uint64_t> Monitor::UsedBy(int pid) {
  std::map<int, uint64_t> used;
  if (pid <= 0) return used;
  for (const GpuProcess& p : snapshot_.processes) {
    auto g = groups_.find(p.pid);
    if (p.pid == pid || (g != groups_.end() && g->second == pid)) {
      used[p.gpu] += p.used_bytes;
    }
  }
  return used;
}

uint64_t Monitor::Measured(const std::string& id,
                           const std::string& command) const {
  auto it = records_.find(id);
  if (it == records_.end() || it->second.command != command) return 0;
  return it->second.peak;
}

std::vector<int> Monitor::MeasuredGpus(const std::string& id,
                                       const std::string& command) const {
  auto it = records_.find(id);
  if (it == records_.end() || it->second.command != command) return {};
  return it->second.gpus;
}

std::vector<int> Monitor::Placed(const std::string& id) const {
  auto it = placed_.find(id);
  return it == placed_.end() ? std::vector<int>{} : it->second;
}

void Monitor::Place(const std::string& id, std::vector<int> gpus) {
  placed_[id] = std::move(gpus);
}

absl::Duration Monitor::StartTime(const std::string& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? absl::ZeroDuration() : it->second.start_time;
}

uint64_t Monitor::Sample(const std::string& id, const std::string& command,
                         int pid) {
  std::map<int, uint64_t> used = UsedBy(pid);
  last_used_[id] = used;
  uint64_t peak = 0;
  std::vector<int> gpus;
  for (const auto& [gpu, bytes] : used) {
    peak = std::max(peak, bytes);
    gpus.push_back(gpu);
  }
  if (peak == 0) return 0;
  Record& r = records_[id];
  if (r.command != command) {
    r = Record();
    r.command = command;
  }
  if (peak <= r.peak) return peak;
  r.peak = peak;
  r.gpus = gpus;
  if (r.peak >= r.saved_peak + r.saved_peak / 100 + 1) Save();
  return peak;
}

void Monitor::OnStarted(const std::string& id, const std::string& command,
                        absl::Duration took) {
  Record& r = records_[id];
  if (r.command != command) {
    r = Record();
    r.command = command;
  }
  r.start_time = took;
  Save();
}

void Monitor::OnStopped(const std::string& id, int group, uint64_t footprint,
                        absl::Duration wait) {
  std::map<int, uint64_t> used = last_used_[id];
  for (int gpu : Placed(id)) used[gpu] = std::max(used[gpu], footprint);
  last_used_.erase(id);
  placed_.erase(id);
  absl::Time now = clock_->Now();
  for (const auto& [gpu, bytes] : used) {
    if (bytes == 0) continue;
    uint64_t before = std::min(Other(gpu), other_before_[gpu]);
    releases_.push_back(Release{gpu, group, bytes, before, now, now + wait,
                                now + wait + kGiveUpAfter, false});
  }
  // A driver that frees at once is seen to have done so now, not at the
  // next read.
  Refresh(absl::ZeroDuration());
}

ModelMemory Monitor::MemoryOf(const std::string& id, const std::string& command,
                              int pid) {
  ModelMemory m;
  m.measured = Measured(id, command);
  m.gpus = Placed(id);
  std::map<int, uint64_t> used = UsedBy(pid);
  for (const auto& [gpu, bytes] : used) {
    m.used = std::max(m.used, bytes);
    if (std::find(m.gpus.begin(), m.gpus.end(), gpu) == m.gpus.end()) {
      m.gpus.push_back(gpu);
    }
  }
  std::sort(m.gpus.begin(), m.gpus.end());
  return m;
}

// The state file: {"version": 1, "models": {"<id>": {"command": "...",
// "vramBytes": N, "gpus": [..], "startMs": N}}}.
void Monitor::Load() {
  if (options_.state_file.empty()) return;
  std::ifstream in(options_.state_file);
  if (!in) return;  // None yet.
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("models") ||
      !doc["models"].IsObject()) {
    Log("warn", absl::StrCat(options_.state_file,
                             ": not a footprint file; measuring anew"));
    return;
  }
  for (auto& m : doc["models"].GetObject()) {
    const rapidjson::Value& v = m.value;
    if (!v.IsObject() || !v.HasMember("command") || !v["command"].IsString() ||
        !v.HasMember("vramBytes") || !v["vramBytes"].IsUint64()) {
      continue;
    }
    Record r;
    r.command = v["command"].GetString();
    r.peak = r.saved_peak = v["vramBytes"].GetUint64();
    if (v.HasMember("gpus") && v["gpus"].IsArray()) {
      for (auto& g : v["gpus"].GetArray()) {
        if (g.IsInt()) r.gpus.push_back(g.GetInt());
      }
    }
    if (v.HasMember("startMs") && v["startMs"].IsInt64()) {
      r.start_time = absl::Milliseconds(v["startMs"].GetInt64());
    }
    records_[m.name.GetString()] = std::move(r);
  }
}

void Monitor::Save() {
  for (auto& [id, r] : records_) r.saved_peak = r.peak;
  if (options_.state_file.empty()) return;
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.StartObject();
  w.Key("version");
  w.Int(1);
  w.Key("models");
  w.StartObject();
  for (const auto& [id, r] : records_) {
    w.Key(id.c_str());
    w.StartObject();
    w.Key("command");
    w.String(r.command.c_str());
    w.Key("vramBytes");
    w.Uint64(r.peak);
    w.Key("gpus");
    w.StartArray();
    for (int g : r.gpus) w.Int(g);
    w.EndArray();
    w.Key("startMs");
    w.Int64(absl::ToInt64Milliseconds(r.start_time));
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  std::string tmp = options_.state_file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << out.GetString() << '\n';
    if (!f) {
      Log("warn", absl::StrCat("cannot write ", tmp,
                               "; footprints are kept in memory only"));
      options_.state_file.clear();
      return;
    }
  }
  if (std::rename(tmp.c_str(), options_.state_file.c_str()) != 0) {
    Log("warn", absl::StrCat("cannot write ", options_.state_file,
                             "; footprints are kept in memory only"));
    options_.state_file.clear();
  }
}

}  // namespace modelplane::gpu
