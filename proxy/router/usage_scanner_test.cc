#include "proxy/router/usage_scanner.h"

#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

using ::testing::Eq;
using ::testing::Optional;

UsageScanner ScanWhole(absl::string_view s) {
  UsageScanner u;
  u.Feed(s);
  return u;
}

TEST(UsageScannerTest, OpenAiJsonAndStreams) {
  UsageScanner json = ScanWhole(
      R"({"id":"x","choices":[{"finish_reason":"stop"}],"usage":{)"
      R"("prompt_tokens":12,"completion_tokens":345,"total_tokens":357,)"
      R"("prompt_tokens_details":{"cached_tokens":9},)"
      R"("completion_tokens_details":{"reasoning_tokens":7}}})");
  EXPECT_THAT(json.prompt(), Optional(Eq(12u)));
  EXPECT_THAT(json.completion(), Optional(Eq(345u)));
  EXPECT_THAT(json.cached(), Optional(Eq(9u)));

  UsageScanner sse = ScanWhole(
      "data: "
      "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n"
      "data: {\"choices\":[],\"usage\": {\"prompt_tokens\" : 3, "
      "\"completion_tokens\":\n40}}\n\ndata: [DONE]\n\n");
  EXPECT_THAT(sse.prompt(), Optional(Eq(3u)));
  EXPECT_THAT(sse.completion(), Optional(Eq(40u)));
}

TEST(UsageScannerTest, AnthropicLastValueWins) {
  UsageScanner u = ScanWhole(
      "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":"
      "25,\"cache_creation_input_tokens\":100,\"output_tokens\":1}}}\n\n"
      "event: message_delta\ndata: {\"usage\":{\"output_tokens\":15}}\n\n");
  EXPECT_THAT(u.prompt(), Optional(Eq(25u)));
  EXPECT_THAT(u.completion(), Optional(Eq(15u)));
}

TEST(UsageScannerTest, LlamaServerCompletion) {
  UsageScanner u = ScanWhole(
      R"({"content":"hi","tokens_predicted":42,"tokens_evaluated":7,)"
      R"("tokens_cached":3,"timings":{"prompt_n":7,"predicted_n":42}})");
  EXPECT_THAT(u.prompt(), Optional(Eq(7u)));
  EXPECT_THAT(u.completion(), Optional(Eq(42u)));
}

TEST(UsageScannerTest, SpacesAroundTheColonAreBounded) {
  // Up to eight on each side count; more never do, however it is split.
  const std::string ok = "{\"prompt_tokens\"        :        7,}";
  const std::string too_many =
      "{\"prompt_tokens\"" + std::string(9, ' ') +
      ":7,\"completion_tokens\":" + std::string(50, ' ') + "8}";
  for (const std::string* s : {&ok, &too_many}) {
    UsageScanner whole = ScanWhole(*s);
    UsageScanner bytes;
    for (char c : *s) bytes.Feed(absl::string_view(&c, 1));
    EXPECT_EQ(whole.prompt(), bytes.prompt()) << *s;
    EXPECT_EQ(whole.completion(), bytes.completion()) << *s;
  }
  EXPECT_THAT(ScanWhole(ok).prompt(), Optional(Eq(7u)));
  EXPECT_FALSE(ScanWhole(too_many).prompt().has_value());
  EXPECT_FALSE(ScanWhole(too_many).completion().has_value());
}

TEST(UsageScannerTest, IgnoresLookalikes) {
  UsageScanner u = ScanWhole(
      R"({"content":"say \"prompt_tokens\":5","cached_tokens":3,)"
      R"("xprompt_tokens":4,"prompt_tokens":null,"completion_tokens":"7",)"
      R"("max_completion_tokens":9,"completion_tokens":12345678901234567890})");
  EXPECT_FALSE(u.prompt().has_value());
  EXPECT_FALSE(u.completion().has_value());  // Too long to be a count.
  EXPECT_FALSE(ScanWhole(R"({"prompt_tokens":12)").prompt().has_value())
      << "a number that may go on is not taken";
}

TEST(UsageScannerTest, LlamaCppTimings) {
  // llama-server's last stream event: its usage and its timings.
  UsageScanner u = ScanWhole(
      "data: {\"choices\":[{\"finish_reason\":\"stop\",\"delta\":{}}],"
      "\"usage\":{\"completion_tokens\":96,\"prompt_tokens\":30},"
      "\"timings\":{\"cache_n\":12,\"prompt_n\":18,\"prompt_ms\":40.1,"
      "\"prompt_per_token_ms\":2.2,\"prompt_per_second\":448.87,"
      "\"predicted_n\":96,\"predicted_ms\":1200.5,"
      "\"predicted_per_second\":79.96668,\"draft_n\":40,"
      "\"draft_n_accepted\":31}}\n\ndata: [DONE]\n\n");
  EXPECT_THAT(u.prompt(), Optional(Eq(30u)));
  EXPECT_THAT(u.completion(), Optional(Eq(96u)));
  EXPECT_THAT(u.cached(), Optional(Eq(12u)));
  EXPECT_THAT(u.draft(), Optional(Eq(40u)));
  EXPECT_THAT(u.draft_accepted(), Optional(Eq(31u)));
  EXPECT_THAT(u.prompt_per_second(), Optional(Eq(448.87)));
  EXPECT_THAT(u.predicted_per_second(), Optional(Eq(79.96668)));
  // Exponents; not numbers.
  EXPECT_THAT(ScanWhole(R"({"predicted_per_second":1.5e+03,"x":1})")
                  .predicted_per_second(),
              Optional(Eq(1500.0)));
  EXPECT_FALSE(ScanWhole(R"({"prompt_per_second":null,"x":1})")
                   .prompt_per_second()
                   .has_value());
  EXPECT_FALSE(
      ScanWhole(R"({"prompt_per_second":12.5)").prompt_per_second().has_value())
      << "a number that may go on is not taken";
}

// Speeds in the plain decimal form are read without SimpleAtod (its fast
// path): the same double, bit for bit, as SimpleAtod gives, for every
// length of mantissa and fraction up to and past the fast path's bounds.
TEST(UsageScannerTest, PlainDecimalsReadAsSimpleAtodReadsThem) {
  std::mt19937_64 rng(7);
  int checked = 0;
  for (int digits = 1; digits <= 19; ++digits) {
    for (int point = 0; point <= digits; ++point) {
      for (int round = 0; round < 40; ++round) {
        std::string number;
        for (int i = 0; i < digits; ++i) {
          if (i == point && point > 0) number += '.';
          number += static_cast<char>('0' + rng() % 10);
        }
        double want = 0;
        ASSERT_TRUE(absl::SimpleAtod(number, &want)) << number;
        UsageScanner u =
            ScanWhole(absl::StrCat(R"({"prompt_per_second":)", number, "}"));
        ASSERT_THAT(u.prompt_per_second(), Optional(Eq(want))) << number;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 7000);
}

TEST(UsageScannerTest, SameAnswerAtEverySplit) {
  const std::string body =
      "data: {\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\n" +
      std::string(100, 'x') +
      "data: {\"usage\":{\"prompt_tokens\":70,\"completion_tokens\":1234}}\n\n"
      "data: {\"timings\":{\"cache_n\" :  5,\"predicted_per_second\":        "
      "12345.678901234e-2 ,\"draft_n_accepted\":31}}\n\n";
  for (size_t a = 0; a <= body.size(); ++a) {
    for (size_t b = a; b <= body.size(); b += 7) {
      UsageScanner u;
      u.Feed(absl::string_view(body).substr(0, a));
      u.Feed(absl::string_view(body).substr(a, b - a));
      u.Feed(absl::string_view(body).substr(b));
      ASSERT_THAT(u.prompt(), Optional(Eq(70u))) << a << " " << b;
      ASSERT_THAT(u.completion(), Optional(Eq(1234u))) << a << " " << b;
      ASSERT_THAT(u.cached(), Optional(Eq(5u))) << a << " " << b;
      ASSERT_THAT(u.draft_accepted(), Optional(Eq(31u))) << a << " " << b;
      ASSERT_THAT(u.predicted_per_second(), Optional(Eq(123.45678901234)))
          << a << " " << b;
    }
  }
  // Byte by byte.
  UsageScanner u;
  for (char c : body) u.Feed(absl::string_view(&c, 1));
  EXPECT_THAT(u.prompt(), Optional(Eq(70u)));
  EXPECT_THAT(u.completion(), Optional(Eq(1234u)));
}

}  // namespace
}  // namespace modelplane::proxy::router
