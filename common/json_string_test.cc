#include "common/json_string.h"

#include "gtest/gtest.h"

namespace modelplane {
namespace {

TEST(JsonStringTest, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(JsonString("say \"hi\"\\ \n\r\t"), R"("say \"hi\"\\ \n\r\t")");
  EXPECT_EQ(JsonString(std::string("a\0b\x1b", 4)), R"("a\u0000b\u001b")");
  EXPECT_EQ(JsonString("\x7f"), R"("\u007f")");
}

TEST(JsonStringTest, KeepsUtf8AndReplacesWhatIsNot) {
  EXPECT_EQ(JsonString("héllo 模型 🙂"), "\"héllo 模型 🙂\"");
  EXPECT_EQ(JsonString("\xff"), R"("\ufffd")");
  EXPECT_EQ(JsonString("a\xc3"), R"("a\ufffd")");          // Truncated.
  EXPECT_EQ(JsonString("\xc0\xaf"), R"("\ufffd\ufffd")");  // Overlong.
  EXPECT_EQ(JsonString("\xed\xa0\x80"),
            R"("\ufffd\ufffd\ufffd")");  // Surrogate.
  EXPECT_EQ(JsonString("\xf4\x90\x80\x80"),
            R"("\ufffd\ufffd\ufffd\ufffd")");  // Past U+10FFFF.
  EXPECT_EQ(JsonString("ok\xe6\xa8x"), R"("ok\ufffd\ufffdx")");
}

}  // namespace
}  // namespace modelplane
