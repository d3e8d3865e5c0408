#include "server/core/config/shell_split.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct SplitCase {
  std::string name;
  std::string input;
  std::vector<std::string> want;
};

class SplitCommandTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitCommandTest, Splits) {
  absl::StatusOr<std::vector<std::string>> got = SplitCommand(GetParam().input);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SplitCommandTest,
    ::testing::Values(
        SplitCase{"Plain",
                  "llama-server -m a.gguf",
                  {"llama-server", "-m", "a.gguf"}},
        SplitCase{"ExtraBlanks", "  a \t b  ", {"a", "b"}},
        SplitCase{"SingleQuotes", "a 'b c' 'd\"e'", {"a", "b c", "d\"e"}},
        SplitCase{"DoubleQuotes",
                  R"(a "b c" "d\"e" "f\\g" "h\i")",
                  {"a", "b c", "d\"e", "f\\g", "h\\i"}},
        SplitCase{"AdjacentQuotesJoin", R"(--x='a b'"c d"e)", {"--x=a bc de"}},
        SplitCase{"EmptyQuotesAreAnArgument", "a '' \"\"", {"a", "", ""}},
        SplitCase{
            "BackslashEscapes", R"(a\ b c\"d \$X)", {"a b", "c\"d", "$X"}},
        SplitCase{
            "DollarStaysLiteral", "echo $HOME ${X}", {"echo", "$HOME", "${X}"}},
        SplitCase{"CommentLinesDropped",
                  "llama-server\n  # --flash-attn\n  -m a.gguf\n#last",
                  {"llama-server", "-m", "a.gguf"}},
        SplitCase{
            "BackslashNewlineJoins", "a \\\n  b \\\n  c", {"a", "b", "c"}},
        SplitCase{
            "BackslashNewlineWithTrailingBlanks", "a \\  \n b", {"a", "b"}},
        SplitCase{"NewlinesSeparateWords", "a\nb\n\nc\n", {"a", "b", "c"}},
        SplitCase{"InlineCommentAtWordStart", "a b # c d\ne", {"a", "b", "e"}},
        SplitCase{"HashInsideWordIsLiteral", "a b#c", {"a", "b#c"}},
        SplitCase{"QuotedNewlineKept", "a 'b\nc'", {"a", "b\nc"}},
        SplitCase{"ContinuationInsideQuotesIsABlank", "\"a\\\nb\"", {"a b"}}),
    [](const ::testing::TestParamInfo<SplitCase>& info) {
      return info.param.name;
    });

TEST(SplitCommandErrorTest, UnterminatedSingleQuote) {
  absl::StatusOr<std::vector<std::string>> got = SplitCommand("a 'b c");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(), "unterminated single quote");
}

TEST(SplitCommandErrorTest, UnterminatedDoubleQuote) {
  EXPECT_EQ(SplitCommand("a \"b").status().message(),
            "unterminated double quote");
}

TEST(SplitCommandErrorTest, TrailingBackslash) {
  EXPECT_EQ(SplitCommand("a \\\\\\").status().message(), "trailing backslash");
}

TEST(SplitCommandTest, EmptyAndCommentOnlyGiveNoWords) {
  EXPECT_THAT(*SplitCommand(""), IsEmpty());
  EXPECT_THAT(*SplitCommand("  # nothing\n   \n"), IsEmpty());
}

TEST(SanitizeCommandTest, DropsCommentsAndJoinsContinuations) {
  EXPECT_EQ(SanitizeCommand("a \\\n# skip\n b"), "a   b\n");
  EXPECT_THAT(*SplitCommand(SanitizeCommand("x \\\n y")),
              ElementsAre("x", "y"));
}

}  // namespace
}  // namespace modelplane::config
