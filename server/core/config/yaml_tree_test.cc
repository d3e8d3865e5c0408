#include "server/core/config/yaml_tree.h"

#include <string>

#include "gtest/gtest.h"
#include "server/core/config/decode_util.h"

namespace modelplane::config {
namespace {

YamlNode Parse(const std::string& text) {
  Diagnostic error;
  std::optional<YamlNode> n = ParseYaml(text, &error);
  EXPECT_TRUE(n.has_value()) << error.message;
  return n.value_or(YamlNode());
}

TEST(YamlTreeTest, CoreSchemaTyping) {
  EXPECT_EQ(ToValue(Parse("[1, -2, 0x1f, 0o17, 1.5, 2e3, .inf, true, False, "
                          "~, null, '3', \"true\", abc, 1.2.3]"))
                .ToJson(),
            R"([1,-2,31,15,1.5,2000.0,null,true,false,null,null,"3","true",)"
            R"("abc","1.2.3"])");
}

TEST(YamlTreeTest, PositionsAreOneBased) {
  YamlNode root = Parse("a:\n  b: [x, y]\n");
  const YamlNode* b = root.Get("a")->Get("b");
  EXPECT_EQ(b->pos.line, 2);
  EXPECT_EQ(b->pos.column, 6);
  EXPECT_EQ(b->items[1].pos.column, 10);
}

TEST(YamlTreeTest, MergeKeysKeepExplicitKeysAndOrder) {
  YamlNode root = Parse(
      "base: &b {x: 1, y: 2}\nother: &o {z: 3, x: 9}\n"
      "m:\n  <<: [*b, *o]\n  y: 5\n");
  EXPECT_EQ(ToValue(*root.Get("m")).ToJson(), R"({"y":5,"x":1,"z":3})");
}

TEST(YamlTreeTest, DuplicateKeyIsAnError) {
  Diagnostic error;
  EXPECT_FALSE(ParseYaml("a: 1\nb: 2\na: 3\n", &error).has_value());
  EXPECT_EQ(error.message, "mapping key \"a\" already defined");
  EXPECT_EQ(error.pos.line, 3);
}

TEST(YamlTreeTest, SelfReferentialAliasIsAnErrorNotACrash) {
  Diagnostic error;
  EXPECT_FALSE(ParseYaml("a: &x\n  b: *x\n", &error).has_value());
  EXPECT_NE(error.message.find("nested more than"), std::string::npos)
      << error.message;
}

TEST(ValueTest, JsonEscapesAndNonFiniteDoubles) {
  Value v = Value::Object();
  v.Set("s", Value::String("a\"b\n"));
  v.Set("nan", Value::Double(std::nan("")));
  v.Set("s", Value::String("again"));
  EXPECT_EQ(v.ToJson(), R"({"s":"again","nan":null})");
  EXPECT_EQ(*v.Find("s"), Value::String("again"));
  EXPECT_EQ(v.Find("missing"), nullptr);
}

TEST(NearestKeyTest, SuggestsCloseKeysOnly) {
  std::vector<absl::string_view> known = {"healthCheckTimeout", "ttl",
                                          "aliases", "cmdStop"};
  EXPECT_EQ(NearestKey("heathCheckTimeout", known), "healthCheckTimeout");
  EXPECT_EQ(NearestKey("TTL", known), "ttl");
  EXPECT_EQ(NearestKey("cmd_stop", known), "cmdStop");
  EXPECT_EQ(NearestKey("completely-else", known), "");
}

}  // namespace
}  // namespace modelplane::config
