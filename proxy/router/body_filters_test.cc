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

TEST(BodyFiltersTest, RewritesTheMultipartModelField) {
  std::string body =
      "--B\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"a\"\r\n\r\n"
      "\x01\x02\r\n--B\r\nContent-Disposition: form-data; "
      "name=\"model\"\r\n\r\n"
      "whisper\r\n--B--\r\n";
  std::string out = RewriteMultipartModel(body, "B", "large-v3");
  EXPECT_EQ(out,
            "--B\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"a\"\r\n\r\n"
            "\x01\x02\r\n--B\r\nContent-Disposition: form-data; "
            "name=\"model\"\r\n\r\n"
            "large-v3\r\n--B--\r\n");
  EXPECT_EQ(RewriteMultipartModel("--B--\r\n", "B", "x"), "--B--\r\n");
}

}  // namespace
}  // namespace modelplane::proxy::router
