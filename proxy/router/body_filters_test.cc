#include "proxy/router/body_filters.h"

#include <string>

#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

TEST(BodyFiltersTest, AppliedInLlamaSwapOrder) {
  FilterSpec f{
      "Qwen/Qwen2.5-7B-Instruct",
      {"temperature", "model", "top_p"},
      R"({"top_k":20,"temperature":0.1,"model":"evil","chat":{"x":[1]}})",
      {}};
  absl::StatusOr<std::string> out = ApplyJsonFilters(
      R"({"model":"qwen","messages":[{"role":"user","content":"hi"}],)"
      R"("temperature":0.7,"top_p":0.9,"top_k":5})",
      f);
  ASSERT_TRUE(out.ok()) << out.status();
  // model renamed (never stripped, never set), temperature stripped then
  // set again by setParams, top_p stripped, top_k overridden, chat added.
  EXPECT_EQ(
      *out,
      R"({"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user",)"
      R"("content":"hi"}],"top_k":20,"temperature":0.1,"chat":{"x":[1]}})");
}

TEST(BodyFiltersTest, InvalidBodiesAreInvalidArgument) {
  FilterSpec f{"x", {}, "", {}};
  EXPECT_EQ(ApplyJsonFilters("{nope", f).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyJsonFilters("[1]", f).status().message(),
            "the JSON body must be an object");
}

// A key twice in an object a filter changes: the filter would strip or set
// the first, and the upstream's parser reads the last (a stripped parameter
// kept, a setParams cap overridden). Refused.
TEST(BodyFiltersTest, AKeyTwiceWhereAFilterLooksIsRefused) {
  FilterSpec strip{"", {"temperature", "kw.drop"}, "", {}};
  FilterSpec set{"", {}, R"({"max_tokens":100,"kw.cap":1})", {}};
  struct Case {
    const FilterSpec* f;
    std::string body;
    std::string key;
  } cases[] = {
      {&strip, R"({"model":"g","temperature":1,"temperature":2})",
       "temperature"},
      {&strip, R"({"model":"g","kw":{"drop":1,"drop":2}})", "drop"},
      {&set, R"({"model":"g","max_tokens":9999,"max_tokens":9999})",
       "max_tokens"},
      {&set, R"({"model":"g","kw":{"cap":5,"c\u0061p":6}})", "cap"},
      {&set, R"({"model":"a","model":"b"})", "model"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> out = ApplyJsonFilters(c.body, *c.f);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument)
        << c.body;
    EXPECT_NE(out.status().message().find("the key \"" + c.key + "\" twice"),
              absl::string_view::npos)
        << out.status();
  }
  // Elsewhere a repeated key is the upstream's business.
  EXPECT_TRUE(
      ApplyJsonFilters(R"({"model":"g","other":{"x":1,"x":2}})", strip).ok());
}

// Go servers read "Temperature" as temperature: the filters find keys in
// any letter case, as the duplicate check compares them.
TEST(BodyFiltersTest, FiltersFindKeysInAnyLetterCase) {
  FilterSpec f{
      "served", {"temperature", "kw.top_p"}, R"({"max_tokens":5})", {}};
  absl::StatusOr<std::string> out = ApplyJsonFilters(
      R"({"Model":"g","TEMPERATURE":2,"kw":{"Top_P":0.1,"x":1},)"
      R"("Max_Tokens":999})",
      f);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"Model":"served","kw":{"x":1},"max_tokens":5})");
  // Go's folds beyond ASCII: the Kelvin sign is k, the long s is s.
  FilterSpec cap{"", {"stop"}, R"({"max_tokens":5})", {}};
  out = ApplyJsonFilters(
      "{\"model\":\"g\",\"\xc5\xbfTOP\":[\"x\"],\"max_to\xe2\x84\xaa"
      "ens\":9}",
      cap);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"g","max_tokens":5})");
  // No path reaches the model name, in any case.
  FilterSpec strip_model{"", {"MODEL"}, R"({"Model":"x"})", {}};
  out = ApplyJsonFilters(R"({"model":"g"})", strip_model);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"g"})");
}

TEST(BodyFiltersTest, NanAndInfinityPassThrough) {
  FilterSpec f{"", {"temperature"}, "", {}};
  absl::StatusOr<std::string> out =
      ApplyJsonFilters(R"({"model":"g","temperature":1,"x":NaN})", f);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"g","x":NaN})");
}

// Numbers go upstream as the client wrote them: no rounding through a
// double, no change of form.
TEST(BodyFiltersTest, NumbersKeepTheirText) {
  FilterSpec f{"", {"temperature"}, R"({"top_k":20})", {}};
  absl::StatusOr<std::string> out = ApplyJsonFilters(
      R"({"model":"g","temperature":1,"seed":18446744073709551617,)"
      R"("p":0.1000000000000000000000001,"e":1E+300,"n":-0.0,"i":-Infinity,)"
      R"("a":[1e5,"1e5",12345678901234567890123456789]})",
      f);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            R"({"model":"g","seed":18446744073709551617,)"
            R"("p":0.1000000000000000000000001,"e":1E+300,"n":-0.0,)"
            R"("i":-Infinity,"a":[1e5,"1e5",12345678901234567890123456789],)"
            R"("top_k":20})");
}

// The config's numbers too: setParams' JSON is read at full precision.
TEST(BodyFiltersTest, SetParamsKeepTheConfigsNumbers) {
  FilterSpec f{
      "", {}, R"({"seed":9007199254740993,"p":0.1000000000000000055})", {}};
  absl::StatusOr<std::string> out = ApplyJsonFilters(R"({"model":"g"})", f);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"g","seed":9007199254740993,"p":0.1})");
}

TEST(BodyFiltersTest, SetParamsByIdAppliesToTheNameRequestedAfterSetParams) {
  FilterSpec f{"",
               {},
               R"({"top_k":20,"temperature":0.6})",
               {{"qwen:think", R"({"temperature":1.0,"think":true})"},
                {"qwen", R"({"think":false,"model":"evil"})"}}};
  std::string body = R"({"model":"qwen:think","top_k":5})";
  EXPECT_TRUE(f.AppliesTo("qwen:think"));
  absl::StatusOr<std::string> out = ApplyJsonFilters(body, f, "qwen:think");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"qwen:think","top_k":20,"temperature":1.0,)"
                  R"("think":true})");
  out = ApplyJsonFilters(R"({"model":"qwen"})", f, "qwen");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"qwen","top_k":20,"temperature":0.6,)"
                  R"("think":false})");
  out = ApplyJsonFilters(R"({"model":"q2"})", f, "q2");  // An other alias.
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"model":"q2","top_k":20,"temperature":0.6})");
  FilterSpec by_id_only{"", {}, "", {{"m:hot", R"({"t":1})"}}};
  EXPECT_TRUE(by_id_only.AppliesTo("m:hot"));
  EXPECT_FALSE(by_id_only.AppliesTo("m"));  // The body is left as it came.
}

// stripParams and setParams keys are sjson paths, as in llama-swap.
std::string Filtered(const std::string& body, std::vector<std::string> strip,
                     const std::string& set) {
  FilterSpec f{"", std::move(strip), set, {}};
  absl::StatusOr<std::string> out = ApplyJsonFilters(body, f);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

TEST(BodyFiltersTest, SetParamsPathsReachIntoObjectsAndArrays) {
  // Into an object that exists, and one made on the way.
  EXPECT_EQ(
      Filtered(R"({"model":"m","chat_template_kwargs":{"a":1}})", {},
               R"({"chat_template_kwargs.enable_thinking":false,)"
               R"("extra.deep.er":"x"})"),
      R"({"model":"m","chat_template_kwargs":{"a":1,"enable_thinking":false},)"
      R"("extra":{"deep":{"er":"x"}}})");
  // Array indexes: replace, past the end (padded), append; a number made on
  // the way is an array, a ':' number an object key.
  EXPECT_EQ(Filtered(R"({"stop":["a","b"]})", {},
                     R"({"stop.1":"B","stop.3":"D","stop.-1":"E",)"
                     R"("n.0":1,"ids.:7":true})"),
            R"({"stop":["a","B",null,"D","E"],"n":[1],"ids":{"7":true}})");
  // An escaped dot is part of the key; a scalar in the way is replaced.
  EXPECT_EQ(Filtered(R"({"a":5})", {}, R"({"fav\\.movie":1,"a.b":2})"),
            R"({"a":{"b":2},"fav.movie":1})");
  // An array where the path names a key is replaced by an object (sjson
  // would leave the array and set nothing: a client could so keep a setting
  // the config forces); the model name is never set, nor made an object by
  // a path through it.
  EXPECT_EQ(Filtered(R"({"model":"m","arr":[1]})", {},
                     R"({"arr.x":1,"model":"evil","model.x":2})"),
            R"({"model":"m","arr":{"x":1}})");
}

TEST(BodyFiltersTest, StripParamsPathsRemoveNestedValues) {
  EXPECT_EQ(Filtered(R"({"model":"m","a":{"b":1,"c":2},"l":[1,2,3],)"
                     R"("x.y":3,"k":{"5":0}})",
                     {"a.b", "l.0", "l.-1", "x\\.y", "k.:5", "missing.path",
                      "l.9", "a.c.d", "model"},
                     ""),
            R"({"model":"m","a":{"c":2},"l":[2],"k":{}})");
}

TEST(BodyFiltersTest, RewritesTheMultipartModelField) {
  std::string body =
      "--B\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"a\"\r\n\r\n"
      "\x01\x02\r\n--B\r\nContent-Disposition: form-data; "
      "name=\"model\"\r\n\r\n"
      "whisper\r\n--B--\r\n";
  RewriteMultipartModel(&body, "B", "large-v3");
  EXPECT_EQ(body,
            "--B\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"a\"\r\n\r\n"
            "\x01\x02\r\n--B\r\nContent-Disposition: form-data; "
            "name=\"model\"\r\n\r\n"
            "large-v3\r\n--B--\r\n");
  std::string empty = "--B--\r\n";
  RewriteMultipartModel(&empty, "B", "x");
  EXPECT_EQ(empty, "--B--\r\n");
  // The field the scanner routes by, however its name is written.
  std::string unquoted =
      "--B\r\ncontent-disposition: form-data; NAME = model\r\n\r\n"
      "whisper\r\n--B--\r\n";
  RewriteMultipartModel(&unquoted, "B", "v3");
  EXPECT_EQ(unquoted,
            "--B\r\ncontent-disposition: form-data; NAME = model\r\n\r\n"
            "v3\r\n--B--\r\n");
}

}  // namespace
}  // namespace modelplane::proxy::router
