// The store's record text: every field back as it went in, nulls where the
// model reported nothing, strings escaped, decimals kept to three places,
// and a damaged batch refused with its reason.
#include "proxy/store/activity_records.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/json_string.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::store {
namespace {

std::string Decimal(double v) {
  std::string out;
  AppendDecimal(v, &out);
  return out;
}

TEST(ActivityRecordsTest, DecimalsKeepThreePlacesInTheShortestForm) {
  EXPECT_EQ(Decimal(10.25), "10.25");
  EXPECT_EQ(Decimal(1200), "1200");
  EXPECT_EQ(Decimal(0), "0");
  EXPECT_EQ(Decimal(-0.5), "-0.5");
  EXPECT_EQ(Decimal(0.0004), "0");
  EXPECT_EQ(Decimal(-0.0004), "0");
  EXPECT_EQ(Decimal(1.0005), "1.001");
  EXPECT_EQ(Decimal(123456.789), "123456.789");
  EXPECT_EQ(Decimal(0.007), "0.007");
  EXPECT_EQ(Decimal(1e14), "100000000000000");
  EXPECT_EQ(Decimal(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(Decimal(std::nan("")), "null");
}

answers::ActivityEntry Full() {
  answers::ActivityEntry e;
  e.id = 18446744073709551000ULL;
  e.unix_ms = 1700000000123;
  e.model = "qwen \"3\"\n\xC3\xA9";
  e.node = "127.0.0.1:50051";
  e.path = "/v1/chat/completions";
  e.status = 503;
  e.input_tokens = 12;
  e.output_tokens = 0;
  e.cached_tokens = 4;
  e.draft_tokens = 30;
  e.draft_accepted_tokens = 21;
  e.prompt_tokens_per_second = 812.125;
  e.tokens_per_second = 40.5;
  e.time_to_first_token_ms = 95.333;
  e.queue_wait_ms = 0.25;
  e.load_wait_ms = 1200;
  e.duration_ms = 10.25;
  e.error = "no \\ way";
  return e;
}

TEST(ActivityRecordsTest, EveryFieldComesBack) {
  answers::ActivityEntry full = Full();
  answers::ActivityEntry bare;
  bare.id = 2;
  bare.model = "m";
  bare.status = 200;
  bare.duration_ms = 3;
  std::string json = "[";
  AppendRecord(full, &json);
  json += ",";
  AppendRecord(bare, &json);
  json += "]";
  std::vector<answers::ActivityEntry> out;
  ASSERT_TRUE(ParseRecords(json, &out).ok()) << json;
  ASSERT_EQ(out.size(), 2u);
  const answers::ActivityEntry& e = out[0];
  EXPECT_EQ(e.id, full.id);
  EXPECT_EQ(e.unix_ms, full.unix_ms);
  EXPECT_EQ(e.model, full.model);
  EXPECT_EQ(e.node, full.node);
  EXPECT_EQ(e.path, full.path);
  EXPECT_EQ(e.status, 503);
  EXPECT_EQ(e.input_tokens, 12u);
  EXPECT_EQ(e.output_tokens, 0u);
  EXPECT_EQ(e.cached_tokens, 4u);
  EXPECT_EQ(e.draft_tokens, 30u);
  EXPECT_EQ(e.draft_accepted_tokens, 21u);
  EXPECT_EQ(e.prompt_tokens_per_second, 812.125);
  EXPECT_EQ(e.tokens_per_second, 40.5);
  EXPECT_EQ(e.time_to_first_token_ms, 95.333);
  EXPECT_EQ(e.queue_wait_ms, 0.25);
  EXPECT_EQ(e.load_wait_ms, 1200);
  EXPECT_EQ(e.duration_ms, 10.25);
  EXPECT_EQ(e.error, full.error);
  const answers::ActivityEntry& b = out[1];
  EXPECT_EQ(b.id, 2u);
  EXPECT_EQ(b.model, "m");
  EXPECT_EQ(b.node, "");
  EXPECT_FALSE(b.input_tokens.has_value());
  EXPECT_FALSE(b.cached_tokens.has_value());
  EXPECT_FALSE(b.tokens_per_second.has_value());
  EXPECT_FALSE(b.load_wait_ms.has_value());
  EXPECT_EQ(b.error, "");
  EXPECT_THAT(json, ::testing::HasSubstr(
                        "[2,0,\"m\",\"\",\"\",200,null,null,null,null,null,"
                        "null,null,null,null,null,3,null]"));
}

// Every byte that JSON escapes (or that is not plain ASCII), at every
// place in and around an eight-byte word: written escaped, read back.
TEST(ActivityRecordsTest, StringsAreEscapedWhereverTheSpecialByteIs) {
  for (char special : {'"', '\\', '\n', '\x1f', '\x7f', '\xff', '\0'}) {
    for (size_t at = 0; at < 18; ++at) {
      answers::ActivityEntry e;
      e.model = std::string(20, 'a');
      e.model[at] = special;
      std::string json = "[";
      AppendRecord(e, &json);
      json += "]";
      std::string escaped = "\"";
      AppendJsonEscaped(e.model, &escaped);
      escaped += "\"";
      EXPECT_THAT(json, ::testing::HasSubstr(escaped))
          << "byte " << static_cast<int>(special) << " at " << at;
      std::vector<answers::ActivityEntry> out;
      ASSERT_TRUE(ParseRecords(json, &out).ok()) << json;
      if (special != '\xff') {  // Not UTF-8: U+FFFD comes back.
        EXPECT_EQ(out[0].model, e.model);
      }
    }
  }
}

// A duration that was not finite is written null and read back as 0: the
// batch around it stays readable.
TEST(ActivityRecordsTest, ANonFiniteDurationDoesNotSpoilItsBatch) {
  answers::ActivityEntry e = Full();
  e.duration_ms = std::numeric_limits<double>::infinity();
  std::string json = "[";
  AppendRecord(e, &json);
  json += "]";
  std::vector<answers::ActivityEntry> out;
  ASSERT_TRUE(ParseRecords(json, &out).ok()) << json;
  EXPECT_EQ(out[0].duration_ms, 0);
  EXPECT_EQ(out[0].model, e.model);
}

TEST(ActivityRecordsTest, ADamagedBatchIsRefusedAndAddsNothing) {
  std::vector<answers::ActivityEntry> out(1);
  absl::Status s = ParseRecords("[[1,2", &out);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("not JSON"));
  std::string good;
  AppendRecord(Full(), &good);
  s = ParseRecords("[" + good + ",[1,2,3]]", &out);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("record 1"));
  EXPECT_FALSE(ParseRecords("{}", &out).ok());
  EXPECT_EQ(out.size(), 1u);
}

}  // namespace
}  // namespace modelplane::proxy::store
