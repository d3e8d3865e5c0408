#include "proxy/store/activity_records.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "rapidjson/document.h"

namespace modelplane::proxy::store {
namespace {

// Writes `v` with at most three decimals at `p`; returns the end. At most
// 32 bytes.
char* PutDecimal(double v, char* p) {
  if (!std::isfinite(v)) {
    memcpy(p, "null", 4);
    return p + 4;
  }
  // Thousandths as an integer while they fit one exactly (past 2^53 a
  // double has no thousandths to keep); beyond, 17 digits.
  if (std::fabs(v) >= 9e12) {
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%.17g", v);
    memcpy(p, buf, static_cast<size_t>(n));
    return p + n;
  }
  int64_t milli = std::llround(v * 1000);
  if (milli < 0) {
    *p++ = '-';
    milli = -milli;
  }
  p = absl::numbers_internal::FastIntToBuffer(milli / 1000, p);
  int frac = static_cast<int>(milli % 1000);
  if (frac == 0) return p;
  p[0] = '.';
  p[1] = static_cast<char>('0' + frac / 100);
  p[2] = static_cast<char>('0' + frac / 10 % 10);
  p[3] = static_cast<char>('0' + frac % 10);
  p += 4;
  while (p[-1] == '0') --p;
  return p;
}

// Names, addresses and paths are plain ASCII nearly always: copied as
// they are. Eight bytes at a time: a byte's high bit is flagged when it is
// below 0x20, 0x7F or over, '"' or '\\' (a borrow may flag a byte after a
// real match, never a plain string's).
bool Plain(absl::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const char* p = s.data();
  const char* end = p + s.size();
  for (; end - p >= 8; p += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t quote = x ^ (kOnes * '"');
    uint64_t slash = x ^ (kOnes * '\\');
    uint64_t del = x ^ (kOnes * 0x7F);
    uint64_t hits = ((x - kOnes * 0x20) & ~x) | ((quote - kOnes) & ~quote) |
                    ((slash - kOnes) & ~slash) | ((del - kOnes) & ~del) | x;
    if ((hits & kHigh) != 0) return false;
  }
  for (; p < end; ++p) {
    unsigned char u = static_cast<unsigned char>(*p);
    if (u < 0x20 || u >= 0x7F || u == '"' || u == '\\') return false;
  }
  return true;
}

// A record's text gathered on the stack and appended in one piece (a call
// per field cost more than the formatting).
class RecordWriter {
 public:
  explicit RecordWriter(std::string* out) : out_(out) {}
  ~RecordWriter() { Flush(); }

  void Char(char c) {
    Room(1);
    *p_++ = c;
  }
  void Uint(uint64_t v) {
    Room(absl::numbers_internal::kFastToBufferSize);
    p_ = absl::numbers_internal::FastIntToBuffer(v, p_);
  }
  void Int(int64_t v) {
    Room(absl::numbers_internal::kFastToBufferSize);
    p_ = absl::numbers_internal::FastIntToBuffer(v, p_);
  }
  void Decimal(double v) {
    Room(32);
    p_ = PutDecimal(v, p_);
  }
  void Null() {
    Room(4);
    memcpy(p_, "null", 4);
    p_ += 4;
  }
  void String(absl::string_view s) {
    if (Plain(s) && s.size() + 2 <= sizeof(buf_)) {
      Room(s.size() + 2);
      *p_++ = '"';
      memcpy(p_, s.data(), s.size());
      p_ += s.size();
      *p_++ = '"';
      return;
    }
    Flush();
    out_->push_back('"');
    AppendJsonEscaped(s, out_);
    out_->push_back('"');
  }
  void Optional(const std::optional<uint64_t>& v) {
    if (v) {
      Uint(*v);
    } else {
      Null();
    }
  }
  void Optional(const std::optional<double>& v) {
    if (v) {
      Decimal(*v);
    } else {
      Null();
    }
  }

 private:
  void Room(size_t n) {
    if (static_cast<size_t>(buf_ + sizeof(buf_) - p_) < n) Flush();
  }
  void Flush() {
    out_->append(buf_, static_cast<size_t>(p_ - buf_));
    p_ = buf_;
  }

  std::string* out_;
  char buf_[512];
  char* p_ = buf_;
};

using Json = rapidjson::Value;

bool ReadOptional(const Json& v, std::optional<uint64_t>* out) {
  if (v.IsNull()) {
    *out = std::nullopt;
    return true;
  }
  if (!v.IsUint64()) return false;
  *out = v.GetUint64();
  return true;
}

bool ReadOptional(const Json& v, std::optional<double>* out) {
  if (v.IsNull()) {
    *out = std::nullopt;
    return true;
  }
  if (!v.IsNumber()) return false;
  *out = v.GetDouble();
  return true;
}

bool ReadString(const Json& v, std::string* out, bool nullable) {
  if (nullable && v.IsNull()) {
    out->clear();
    return true;
  }
  if (!v.IsString()) return false;
  out->assign(v.GetString(), v.GetStringLength());
  return true;
}

bool ReadRecord(const Json& r, answers::ActivityEntry* e) {
  if (!r.IsArray() || r.Size() != kRecordFields) return false;
  if (!r[0].IsUint64() || !r[1].IsInt64() || !r[5].IsInt() ||
      !(r[16].IsNumber() || r[16].IsNull())) {
    return false;
  }
  e->id = r[0].GetUint64();
  e->unix_ms = r[1].GetInt64();
  e->status = r[5].GetInt();
  // Written null when it was not finite.
  e->duration_ms = r[16].IsNull() ? 0 : r[16].GetDouble();
  return ReadString(r[2], &e->model, false) &&
         ReadString(r[3], &e->node, false) &&
         ReadString(r[4], &e->path, false) &&
         ReadOptional(r[6], &e->input_tokens) &&
         ReadOptional(r[7], &e->output_tokens) &&
         ReadOptional(r[8], &e->cached_tokens) &&
         ReadOptional(r[9], &e->draft_tokens) &&
         ReadOptional(r[10], &e->draft_accepted_tokens) &&
         ReadOptional(r[11], &e->prompt_tokens_per_second) &&
         ReadOptional(r[12], &e->tokens_per_second) &&
         ReadOptional(r[13], &e->time_to_first_token_ms) &&
         ReadOptional(r[14], &e->queue_wait_ms) &&
         ReadOptional(r[15], &e->load_wait_ms) &&
         ReadString(r[17], &e->error, true);
}

}  // namespace

void AppendDecimal(double v, std::string* out) {
  char buf[32];
  out->append(buf, static_cast<size_t>(PutDecimal(v, buf) - buf));
}

void AppendRecord(const answers::ActivityEntry& e, std::string* out) {
  RecordWriter w(out);
  w.Char('[');
  w.Uint(e.id);
  w.Char(',');
  w.Int(e.unix_ms);
  w.Char(',');
  w.String(e.model);
  w.Char(',');
  w.String(e.node);
  w.Char(',');
  w.String(e.path);
  w.Char(',');
  w.Int(e.status);
  for (const auto* v : {&e.input_tokens, &e.output_tokens, &e.cached_tokens,
                        &e.draft_tokens, &e.draft_accepted_tokens}) {
    w.Char(',');
    w.Optional(*v);
  }
  for (const auto* v :
       {&e.prompt_tokens_per_second, &e.tokens_per_second,
        &e.time_to_first_token_ms, &e.queue_wait_ms, &e.load_wait_ms}) {
    w.Char(',');
    w.Optional(*v);
  }
  w.Char(',');
  w.Decimal(e.duration_ms);
  w.Char(',');
  if (e.error.empty()) {
    w.Null();
  } else {
    w.String(e.error);
  }
  w.Char(']');
}

absl::Status ParseRecords(absl::string_view json,
                          std::vector<answers::ActivityEntry>* out) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseFullPrecisionFlag>(json.data(), json.size());
  if (d.HasParseError()) {
    return absl::DataLossError(absl::StrCat(
        "a stored batch is not JSON (at byte ", d.GetErrorOffset(), ")"));
  }
  if (!d.IsArray()) {
    return absl::DataLossError("a stored batch is not a JSON array");
  }
  size_t before = out->size();
  out->reserve(before + d.Size());
  for (rapidjson::SizeType i = 0; i < d.Size(); ++i) {
    answers::ActivityEntry e;
    if (!ReadRecord(d[i], &e)) {
      out->resize(before);
      return absl::DataLossError(
          absl::StrCat("a stored batch's record ", i, " is not one"));
    }
    out->push_back(std::move(e));
  }
  return absl::OkStatus();
}

}  // namespace modelplane::proxy::store
