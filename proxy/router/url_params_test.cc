#include "proxy/router/url_params.h"

#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

TEST(UrlParamsTest, QueryParamIsDecoded) {
  EXPECT_EQ(QueryParam("/props?model=org%2Fm%2Dx&a=1", "model"), "org/m-x");
  EXPECT_EQ(QueryParam("/p?a=1&model=a+b", "model"), "a b");
  EXPECT_EQ(QueryParam("/p?mod%65l=x", "model"), "x");  // The name too.
  EXPECT_EQ(QueryParam("/p?model", "model"), "");       // No value.
  EXPECT_EQ(QueryParam("/p", "model"), "");
  EXPECT_EQ(PercentDecode("50%", false), "50%");  // Malformed: kept.
  EXPECT_EQ(PercentDecode("%zz%4", false), "%zz%4");
}

TEST(UrlParamsTest, ReplaceParamRewritesTheFirstOnly) {
  EXPECT_EQ(ReplaceParam("input=hi&model=far%2Fbig&model=x", "model", "big"),
            "input=hi&model=big&model=x");
  EXPECT_EQ(ReplaceParam("model=a", "model", "org/m:q4"), "model=org%2Fm%3Aq4");
  EXPECT_EQ(ReplaceParam("input=hi", "model", "b"), "input=hi");
  EXPECT_EQ(ReplaceParam("", "model", "b"), "");
  EXPECT_EQ(PercentEncode("a-b_c.d~e f"), "a-b_c.d~e%20f");
}

}  // namespace
}  // namespace modelplane::proxy::router
