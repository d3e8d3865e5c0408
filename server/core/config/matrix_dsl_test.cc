#include "server/core/config/matrix_dsl.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class MatrixDslTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::vector<ModelSet>> Expand(const std::string& expr,
                                               size_t max = 4096) {
    return ExpandSetExpression(
        expr,
        [](const std::string& n) -> std::optional<std::string> {
          static const std::map<std::string, std::string> kVars = {
              {"q", "qwen"}, {"l", "llama"}, {"e", "embed"}, {"w", "whisper"}};
          if (auto it = kVars.find(n); it != kVars.end()) return it->second;
          if (n == "org/model:q4") return n;  // A model id as it is.
          return std::nullopt;
        },
        [this](const std::string& n) -> const std::vector<ModelSet>* {
          auto it = sets_.find(n);
          return it == sets_.end() ? nullptr : &it->second;
        },
        max);
  }
  std::map<std::string, std::vector<ModelSet>> sets_;
};

TEST_F(MatrixDslTest, AndBindsTighterThanOr) {
  EXPECT_THAT(*Expand("q & e"), ElementsAre(ModelSet{"embed", "qwen"}));
  EXPECT_THAT(*Expand("q | e & w"),
              ElementsAre(ModelSet{"qwen"}, ModelSet{"embed", "whisper"}));
  EXPECT_THAT(
      *Expand(" ( l | q ) & w "),
      ElementsAre(ModelSet{"llama", "whisper"}, ModelSet{"qwen", "whisper"}));
  EXPECT_THAT(*Expand("org/model:q4&q"),
              ElementsAre(ModelSet{"org/model:q4", "qwen"}));
}

TEST_F(MatrixDslTest, DuplicatesCollapseAndReferencesExpand) {
  EXPECT_THAT(*Expand("q & q | q"), ElementsAre(ModelSet{"qwen"}));
  sets_["coding"] = *Expand("q & e");
  sets_["chat"] = *Expand("(l | q) & w");
  EXPECT_THAT(
      *Expand("+coding | +chat"),
      ElementsAre(ModelSet{"embed", "qwen"}, ModelSet{"llama", "whisper"},
                  ModelSet{"qwen", "whisper"}));
  EXPECT_THAT(*Expand("+coding & w"),
              ElementsAre(ModelSet{"embed", "qwen", "whisper"}));
}

TEST_F(MatrixDslTest, ErrorsNameTheProblem) {
  EXPECT_THAT(Expand("q & nope").status().message(),
              HasSubstr("unknown model or var 'nope'"));
  EXPECT_THAT(Expand("+missing").status().message(),
              HasSubstr("+missing: no such set"));
  EXPECT_THAT(Expand("(q | e").status().message(), HasSubstr("')' missing"));
  EXPECT_THAT(Expand("q &").status().message(), HasSubstr("ends early"));
  EXPECT_THAT(Expand("q e").status().message(), HasSubstr("unexpected 'e'"));
  EXPECT_THAT(Expand("").status().message(), HasSubstr("ends early"));
  EXPECT_THAT(Expand(std::string(100000, '(') + "q").status().message(),
              HasSubstr("deeper than 64"));
  EXPECT_THAT(Expand("(q | e) & (l | w) & (q | l)", 4).status().message(),
              HasSubstr("more than 4 sets"));
}

}  // namespace
}  // namespace modelplane::config
