#include "proxy/router/json_scanner.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

JsonScanner ScanWhole(const std::string& body) {
  JsonScanner s;
  s.Feed(body);
  s.Finish();
  return s;
}

JsonScanner ScanByteByByte(const std::string& body) {
  JsonScanner s;
  for (char c : body) s.Feed(absl::string_view(&c, 1));
  s.Finish();
  return s;
}

TEST(JsonScannerTest, FindsTopLevelModelAndStream) {
  for (auto scan : {ScanWhole, ScanByteByByte}) {
    JsonScanner s = scan(R"({"model": "qwen3" , "stream" : true, "n": 1})");
    EXPECT_FALSE(s.error()) << s.error_message();
    EXPECT_THAT(s.model(), Optional(std::string("qwen3")));
    EXPECT_THAT(s.stream(), Optional(true));
  }
}

TEST(JsonScannerTest, OnlyTheTopLevelCounts) {
  JsonScanner s = ScanByteByByte(
      R"({"messages":[{"role":"user","model":"inner",)"
      R"("content":"{\"model\":\"fake\"} ]}"}],"meta":{"model":{"x":[1,{}]}},)"
      R"("model":"outer","stream":false})");
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_THAT(s.model(), Optional(std::string("outer")));
  EXPECT_THAT(s.stream(), Optional(false));
}

TEST(JsonScannerTest, DecodesEscapesInTheModelName) {
  JsonScanner s = ScanWhole(R"({"model":"org\/m\u00e9del \"q\""})");
  EXPECT_THAT(s.model(), Optional(std::string("org/m\xc3\xa9"
                                              "del \"q\"")));
}

TEST(JsonScannerTest, ModelIsKnownBeforeTheBodyEnds) {
  JsonScanner s;
  s.Feed(R"({"model":"a","prompt":")");
  EXPECT_THAT(s.model(), Optional(std::string("a")));
  EXPECT_FALSE(s.done());
  s.Feed(std::string(1 << 20, 'x'));  // A large prompt is skipped.
  s.Feed(R"(","stream":true})");
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.error());
}

TEST(JsonScannerTest, NonBoolStreamAndLookalikeKeysAreIgnored) {
  JsonScanner s = ScanWhole(
      R"({"stream":"yes","models":"x","model_name":"y","mode":"z","modelX":1})");
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_FALSE(s.model().has_value());
  EXPECT_FALSE(s.stream().has_value());
  JsonScanner n = ScanWhole(R"({"stream":1, "model":null})");
  EXPECT_FALSE(n.stream().has_value());
  EXPECT_FALSE(n.model().has_value());
}

// The whole top level is walked: what follows the model may not be
// skipped (a key after it could be "model" again).
TEST(JsonScannerTest, WalksTheWholeTopLevel) {
  JsonScanner s;
  s.Feed(R"({"model":"a","stream":true, this is not JSON)");
  s.Finish();
  EXPECT_TRUE(s.error());
  EXPECT_EQ(s.error_message(), "invalid JSON at byte 28: expected a key");
}

// The first keys are kept in place, the rest in a set: a duplicate is found
// on either side of that line, and against a key from the other side.
TEST(JsonScannerTest, DuplicatesFoundAmongManyKeys) {
  for (int count : {2, 15, 16, 17, 40}) {
    for (int dup : {0, count / 2, count - 1}) {
      std::string body = "{";
      for (int i = 0; i < count; ++i) absl::StrAppend(&body, "\"k", i, "\":1,");
      absl::StrAppend(&body, "\"k", dup, "\":2}");
      JsonScanner s;
      s.Feed(body);
      s.Finish();
      EXPECT_TRUE(s.error()) << count << " keys, k" << dup << " again";
      EXPECT_THAT(s.error_message(),
                  HasSubstr(absl::StrCat("the key \"k", dup, "\" twice")));
      std::string unique = body.substr(0, body.rfind(",\"k")) + "}";
      JsonScanner ok;
      ok.Feed(unique);
      ok.Finish();
      EXPECT_FALSE(ok.error()) << ok.error_message();
    }
  }
}

TEST(JsonScannerTest, ADuplicateTopLevelKeyIsAnError) {
  struct Case {
    std::string body;
    std::string message;
  } cases[] = {
      {R"({"model":"beta","model":"gamma"})",
       R"(the JSON body has the key "model" twice (again at byte 16, letter case )"
       "aside): refused, since the model would read the last one"},
      // Escapes decoded: the upstream's parser sees "model" twice.
      {R"({"model":"beta","model":"gamma"})",
       R"(the JSON body has the key "model" twice (again at byte 16, letter case )"
       "aside): refused, since the model would read the last one"},
      {R"({"stream":false,"n":1,"stream":true,"model":"m"})",
       R"(the JSON body has the key "stream" twice (again at byte 22, letter case )"
       "aside): refused, since the model would read the last one"},
      // Go's encoding/json reads "Model" as "model" (the last one wins).
      {R"({"model":"beta","Model":"gamma"})",
       R"(the JSON body has the key "Model" twice (again at byte 16, letter )"
       "case aside): refused, since the model would read the last one"},
      {R"({"model":"m","temperature":1,"temperature":2})",
       R"(the JSON body has the key "temperature" twice (again at byte 29, letter case )"
       "aside): refused, since the model would read the last one"},
      // Go folds the Kelvin sign to k and the long s to s: one key to it,
      // raw or escaped.
      {"{\"max_tokens\":1,\"max_to\xe2\x84\xaa"
       "ens\":2}",
       "the JSON body has the key \"max_to\xe2\x84\xaa"
       "ens\" twice (again at "
       "byte 16, letter case aside): refused, since the model would read the "
       "last one"},
      {R"({"stop":1,"\u017fTOP":2})",
       "the JSON body has the key \"\xc5\xbfTOP\" twice (again at byte 10, "
       "letter case aside): refused, since the model would read the last one"},
      // A surrogate pair and the raw UTF-8 of the same character.
      {"{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}",
       "the JSON body has the key \"\xf0\x9f\x98\x80\" twice (again at "
       "byte 18, letter case aside): refused, since the model would read the "
       "last one"},
      {"{\"" + std::string(300, 'k') + "\":1,\"" + std::string(300, 'k') +
           "\":2}",
       "the JSON body has the key \"" +
           std::string(JsonScanner::kMaxKeyBytes, 'k') +
           "...\" twice (again at byte 306, letter case aside): refused, "
           "since the model would read the last one"},
  };
  for (const Case& c : cases) {
    for (auto scan : {ScanWhole, ScanByteByByte}) {
      JsonScanner s = scan(c.body);
      EXPECT_TRUE(s.error()) << c.body;
      EXPECT_EQ(s.error_message(), c.message) << c.body;
    }
  }
  // Not duplicates: keys that differ past the part kept for messages, the
  // same key in nested objects, and lookalikes.
  for (const std::string& body :
       {"{\"" + std::string(300, 'k') + "a\":1,\"" + std::string(300, 'k') +
            "b\":2,\"model\":\"m\"}",
        std::string(R"({"a":{"x":1,"x":2},"b":[{"model":1},{"model":2}],)"
                    R"("model":"m"})"),
        std::string(R"({"model":"m","models":"n","model ":"o"})")}) {
    JsonScanner s = ScanWhole(body);
    EXPECT_FALSE(s.error()) << body << ": " << s.error_message();
    EXPECT_THAT(s.model(), Optional(std::string("m")));
  }
}

TEST(JsonScannerTest, TooManyTopLevelKeysIsAnError) {
  std::string body = "{\"model\":\"m\"";
  for (size_t i = 0; i < JsonScanner::kMaxKeys; ++i) {
    body += ",\"k" + std::to_string(i) + "\":0";
  }
  body += "}";
  JsonScanner s = ScanWhole(body);
  EXPECT_TRUE(s.error());
  EXPECT_THAT(s.error_message(), HasSubstr("more than 4096 top-level keys"));
}

TEST(JsonScannerTest, NanAndInfinityAreValues) {
  // Python's json takes them; a scanner stopping there would hide the keys
  // after them.
  JsonScanner s =
      ScanWhole(R"({"t":NaN,"u":-Infinity,"v":Infinity,"model":"m"})");
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_THAT(s.model(), Optional(std::string("m")));
}

TEST(JsonScannerTest, Errors) {
  struct Case {
    const char* body;
    const char* message;
  } cases[] = {
      {"[1,2]", "invalid JSON at byte 0: the body must be a JSON object"},
      {R"({"model" "x"})", "invalid JSON at byte 9: expected ':'"},
      {R"({"a":1,})", "invalid JSON at byte 7: expected a key"},
      {R"({"a":1 "b":2})", "invalid JSON at byte 7: expected ',' or '}'"},
      {R"({"a":})", "invalid JSON at byte 5: expected a value"},
      {R"({"model":"x)", "invalid JSON at byte 11: the JSON body ends early"},
      {"{\"model\":\"a\nb\"}",
       "invalid JSON at byte 11: control character in a string"},
      {R"({"model":"\q"})", "invalid JSON at byte 11: bad escape in a string"},
      {"", "invalid JSON at byte 0: the JSON body ends early"},
  };
  for (const Case& c : cases) {
    JsonScanner s = ScanWhole(c.body);
    EXPECT_TRUE(s.error()) << c.body;
    EXPECT_EQ(s.error_message(), c.message) << c.body;
  }
  JsonScanner long_name =
      ScanWhole("{\"model\":\"" + std::string(2000, 'm') + "\"}");
  EXPECT_THAT(long_name.error_message(),
              HasSubstr("the model name is too long"));
  JsonScanner deep = ScanWhole("{\"a\":" + std::string(1000, '[') + "}");
  EXPECT_THAT(deep.error_message(), HasSubstr("nested too deeply"));
}

TEST(JsonScannerTest, EmptyObjectAndWhitespace) {
  JsonScanner s = ScanWhole(" \n{ } \n");
  EXPECT_FALSE(s.error()) << s.error_message();
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.model().has_value());
}

// Feed copies keys, literals and the model name in runs: at every split,
// the same answers and the same error at the same byte as the state machine
// alone (FeedEachByte).
TEST(JsonScannerTest, RunsMatchTheStateMachineAtEverySplit) {
  const std::string name_at_limit(JsonScanner::kMaxModelBytes, 'm');
  const std::string bodies[] = {
      R"({"model":"bench","messages":[{"role":"user"}],"max_tokens":4})",
      R"({"modelx":"a","model":"b","streaming":true,"stream":false})",
      R"({"mod\u0065l":"x\"y\u00e9z","stream":true})",
      R"({"stream":truefalse,"model":"m"})",
      R"({"stream":nullnullnullnull,"model":"m"})",
      R"({"a_very_long_key_indeed":12345678901234,"model":"q"})",
      R"({"model":")" + name_at_limit + R"("})",
      R"({"model":")" + name_at_limit + R"(x"})",
      R"({"model":"tab	here"})",
      "{\"model\":\"ctl\x01char\"}",
      R"({"model":"unterminated)",
      R"({"key)",
      // Escapes at the limit: each counts, the name never outgrows it.
      R"({"model":")" + std::string(JsonScanner::kMaxModelBytes - 1, 'e') +
          R"(\nbbbbbbbb"})",
      R"({"model":")" + std::string(JsonScanner::kMaxModelBytes, 'e') +
          R"(\nbbbbbbbb"})",
      R"({"model":")" + std::string(JsonScanner::kMaxModelBytes - 1, 'e') +
          R"(\u00e9bbbbbbbb"})",
      // Runs found eight bytes at a time: stops at every offset within a
      // word, bytes above 0x7f and DEL next to them.
      "{\"messages\":[{\"role\":\"user\",\"content\":\"abcdefg\xc3\xa9\\\"hij"
      "klmnop\x7f\xff\\\\qrstuvw\\\"xy\x01z\"}],\"model\":\"m\xc3\xa9"
      "abcdefgh"
      "ijklmnopq\",\"stream\":true}",
      "{\"model\":\"abcdefghij\x02k\"}",
      "{\"model\":\"abcdefghijklmnop\\\"q\\\\r\\/\"}",
      "{\"a_key_with\x03"
      "control\":1,\"mo\x04"
      "del\":\"x\",\"model\":\"y\"}",
      "{\"p\":\"" + std::string(37, 'x') + "\xf0\x9f\x98\x80" +
          std::string(13, 'y') + "\",\"model\":\"" + std::string(23, 'z') +
          "\"}",
      // Duplicates, escaped and not, and surrogates in keys and the name.
      R"({"model":"a","mo\u0064el":"b"})",
      R"({"abcdefghijkl":1,"abcdefghijkl":2,"model":"m"})",
      R"({"\ud83d\ude00x":1,"model":"\ud83d\ude00\ud83d","stream":true})",
      // Nested values walked in runs: brackets and escaped quotes inside
      // their strings, control characters there, the depth limit reached
      // and passed (the error at the same byte).
      "{\"m\":[{\"c\":\"a]}\\\"[{\\\\\",\"d\":\"\x01\"},[1,{\"e\":[]}]],"
      "\"model\":\"x\",\"n\":{\"model\":\"y\"}}",
      "{\"a\":" + std::string(JsonScanner::kMaxDepth, '[') +
          std::string(JsonScanner::kMaxDepth, ']') + ",\"model\":\"m\"}",
      "{\"a\":" + std::string(JsonScanner::kMaxDepth + 1, '[') +
          std::string(JsonScanner::kMaxDepth + 1, ']') + ",\"model\":\"m\"}",
      R"({"a":[1,2],"model":"m"]})",
  };
  for (const std::string& body : bodies) {
    JsonScanner reference;
    reference.FeedEachByte(body);
    reference.Finish();
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      JsonScanner s;
      s.Feed(absl::string_view(body).substr(0, cut));
      s.Feed(absl::string_view(body).substr(cut));
      s.Finish();
      ASSERT_EQ(s.model(), reference.model()) << body << " cut " << cut;
      ASSERT_EQ(s.stream(), reference.stream()) << body << " cut " << cut;
      ASSERT_EQ(s.error_message(), reference.error_message())
          << body << " cut " << cut;
    }
  }
  // And what the reference says is right.
  JsonScanner at_limit = ScanWhole(bodies[6]);
  EXPECT_THAT(at_limit.model(), Optional(name_at_limit));
  JsonScanner over = ScanWhole(bodies[7]);
  EXPECT_TRUE(over.error());
  EXPECT_THAT(over.error_message(), HasSubstr("too long"));
  const size_t count = sizeof(bodies) / sizeof(bodies[0]);
  EXPECT_THAT(ScanWhole(bodies[count - 4]).model(), Optional(std::string("x")));
  EXPECT_THAT(ScanWhole(bodies[count - 3]).model(), Optional(std::string("m")));
  EXPECT_THAT(ScanWhole(bodies[count - 2]).error_message(),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(ScanWhole(bodies[count - 1]).error_message(),
              HasSubstr("expected ',' or '}'"));
  JsonScanner lookalikes = ScanWhole(bodies[1]);
  EXPECT_THAT(lookalikes.model(), Optional(std::string("b")));
  EXPECT_THAT(lookalikes.stream(), Optional(false));
  for (int i : {12, 13, 14}) {
    JsonScanner long_escape = ScanWhole(bodies[i]);
    EXPECT_TRUE(long_escape.error()) << i;
    EXPECT_THAT(long_escape.error_message(), HasSubstr("too long")) << i;
  }
  JsonScanner escaped = ScanWhole(bodies[2]);
  EXPECT_THAT(escaped.model(), Optional(std::string("x\"y\xc3\xa9z")));
  EXPECT_THAT(ScanWhole(bodies[count - 7]).error_message(), HasSubstr("twice"));
  EXPECT_THAT(ScanWhole(bodies[count - 6]).error_message(), HasSubstr("twice"));
  EXPECT_THAT(ScanWhole(bodies[count - 5]).model(),
              Optional(std::string("\xf0\x9f\x98\x80\xed\xa0\xbd")));
}

}  // namespace
}  // namespace modelplane::proxy::router
