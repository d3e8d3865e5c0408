#include "common/flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FlagParserTest : public ::testing::Test {
 protected:
  FlagParserTest() : flags_("prog [flags]") {
    flags_.String("config", &config_, "config file");
    flags_.Int("port", &port_, "listen port", 0);
    flags_.Double("rate", &rate_, "tokens per second", 0);
    flags_.Bool("print-config", &print_, "print it");
  }

  absl::StatusOr<std::vector<std::string>> Parse(
      std::vector<const char*> args) {
    args.insert(args.begin(), "prog");
    return flags_.Parse(static_cast<int>(args.size()), args.data());
  }

  FlagParser flags_;
  std::string config_ = "default.yaml";
  int port_ = 7;
  double rate_ = 0;
  bool print_ = false;
};

TEST_F(FlagParserTest, SpaceAndEqualsFormsAndUnderscores) {
  auto rest = Parse({"--config", "a.yaml", "--port=80", "--print_config",
                     "--rate", "2.5", "file"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(config_, "a.yaml");
  EXPECT_EQ(port_, 80);
  EXPECT_EQ(rate_, 2.5);
  EXPECT_TRUE(print_);
  EXPECT_THAT(*rest, ElementsAre("file"));
}

TEST_F(FlagParserTest, GoFormsOneDashAndSwitchValues) {
  auto args =
      Parse({"-config", "x.yaml", "-port=3", "-print-config", "-", "-1"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(config_, "x.yaml");
  EXPECT_EQ(port_, 3);
  EXPECT_TRUE(print_);
  EXPECT_THAT(*args, ElementsAre("-", "-1"));
  ASSERT_TRUE(Parse({"--print-config=false"}).ok());
  EXPECT_FALSE(print_);
  ASSERT_TRUE(Parse({"-print-config=true"}).ok());
  EXPECT_TRUE(print_);
  // Every spelling of Go's strconv.ParseBool.
  for (const char* v : {"t", "T", "TRUE", "True", "1"}) {
    std::string arg = std::string("-print-config=") + v;
    ASSERT_TRUE(Parse({arg.c_str()}).ok()) << v;
    EXPECT_TRUE(print_) << v;
    ASSERT_TRUE(Parse({"-print-config=f"}).ok());
    EXPECT_FALSE(print_);
  }
  for (const char* v : {"F", "FALSE", "False", "0"}) {
    ASSERT_TRUE(Parse({"-print-config"}).ok());
    std::string arg = std::string("-print-config=") + v;
    ASSERT_TRUE(Parse({arg.c_str()}).ok()) << v;
    EXPECT_FALSE(print_) << v;
  }
  EXPECT_FALSE(Parse({"--print-config=maybe"}).ok());
  EXPECT_FALSE(Parse({"-nope"}).ok());
}

TEST_F(FlagParserTest, AbsentFlagsKeepDefaults) {
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_EQ(config_, "default.yaml");
  EXPECT_EQ(port_, 7);
  EXPECT_FALSE(print_);
}

TEST_F(FlagParserTest, ErrorsNameTheFlag) {
  EXPECT_EQ(Parse({"--nope"}).status().message(), "unknown flag --nope");
  EXPECT_EQ(Parse({"--port", "x"}).status().message(),
            "bad value 'x' for --port");
  EXPECT_EQ(Parse({"--port", "-1"}).status().message(),
            "bad value '-1' for --port");
  EXPECT_EQ(Parse({"--config"}).status().message(),
            "flag --config needs a value");
  EXPECT_EQ(Parse({"--print-config=yes"}).status().message(),
            "flag --print-config is a switch: true or false");
}

TEST_F(FlagParserTest, HelpIsNotFoundAndUsageListsFlags) {
  EXPECT_EQ(Parse({"--help"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Parse({"-help"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Parse({"-h"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(flags_.Usage(), HasSubstr("usage: prog [flags]"));
  EXPECT_THAT(flags_.Usage(), HasSubstr("--port N"));
  EXPECT_THAT(flags_.Usage(), HasSubstr("--print-config "));
}

TEST_F(FlagParserTest, DoubleDashEndsFlags) {
  auto rest = Parse({"--", "--port", "9"});
  ASSERT_TRUE(rest.ok());
  EXPECT_THAT(*rest, ElementsAre("--port", "9"));
  EXPECT_EQ(port_, 7);
}

}  // namespace
}  // namespace modelplane
