#include "server/core/config/matrix_dsl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace modelplane::config {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '-' || c == '.' || c == ':' || c == '/';
}

class Parser {
 public:
  Parser(
      absl::string_view text,
      const std::function<std::optional<std::string>(const std::string&)>& name,
      const std::function<const std::vector<ModelSet>*(const std::string&)>&
          set,
      size_t max_sets)
      : text_(text), name_(name), set_(set), max_sets_(max_sets) {}

  absl::StatusOr<std::vector<ModelSet>> Parse() {
    std::vector<ModelSet> out;
    if (!Expr(&out)) return absl::InvalidArgumentError(error_);
    Skip();
    if (pos_ != text_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected '", text_.substr(pos_, 1), "' at ", pos_ + 1));
    }
    return out;
  }

 private:
  void Skip() {
    while (pos_ < text_.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }
  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  // expr := term ('|' term)*
  bool Expr(std::vector<ModelSet>* out) {
    if (!Term(out)) return false;
    Skip();
    while (pos_ < text_.size() && text_[pos_] == '|') {
      ++pos_;
      std::vector<ModelSet> more;
      if (!Term(&more)) return false;
      for (ModelSet& s : more) {
        if (std::find(out->begin(), out->end(), s) == out->end()) {
          out->push_back(std::move(s));
        }
      }
      if (out->size() > max_sets_) return TooMany();
      Skip();
    }
    return true;
  }
  // term := factor ('&' factor)*
  bool Term(std::vector<ModelSet>* out) {
    if (!Factor(out)) return false;
    Skip();
    while (pos_ < text_.size() && text_[pos_] == '&') {
      ++pos_;
      std::vector<ModelSet> right;
      if (!Factor(&right)) return false;
      if (out->size() * right.size() > max_sets_) return TooMany();
      std::vector<ModelSet> product;
      for (const ModelSet& a : *out) {
        for (const ModelSet& b : right) {
          ModelSet u;
          std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                         std::back_inserter(u));
          if (std::find(product.begin(), product.end(), u) == product.end()) {
            product.push_back(std::move(u));
          }
        }
      }
      *out = std::move(product);
      Skip();
    }
    return true;
  }
  // factor := NAME | '+' NAME | '(' expr ')'
  bool Factor(std::vector<ModelSet>* out) {
    Skip();
    if (pos_ >= text_.size()) return Fail("the expression ends early");
    char c = text_[pos_];
    if (c == '(') {
      // Bounded: a file's bytes must never overflow the loader's stack.
      if (++depth_ > 64) return Fail("nested deeper than 64 parentheses");
      ++pos_;
      if (!Expr(out)) return false;
      --depth_;
      Skip();
      if (pos_ >= text_.size() || text_[pos_] != ')') {
        return Fail(absl::StrCat("')' missing at ", pos_ + 1));
      }
      ++pos_;
      return true;
    }
    bool ref = c == '+';
    if (ref) ++pos_;
    size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    std::string word(text_.substr(start, pos_ - start));
    if (word.empty()) {
      return Fail(absl::StrCat("a name is expected at ", start + 1));
    }
    if (ref) {
      const std::vector<ModelSet>* sets = set_(word);
      if (sets == nullptr) {
        return Fail(absl::StrCat("+", word,
                                 ": no such set, or one that refers back "
                                 "to this one or does not expand"));
      }
      *out = *sets;
      return true;
    }
    std::optional<std::string> id = name_(word);
    if (!id) return Fail(absl::StrCat("unknown model or var '", word, "'"));
    *out = {ModelSet{*id}};
    return true;
  }
  bool TooMany() {
    return Fail(
        absl::StrCat("expands to more than ", max_sets_, " sets of models"));
  }

  absl::string_view text_;
  const std::function<std::optional<std::string>(const std::string&)>& name_;
  const std::function<const std::vector<ModelSet>*(const std::string&)>& set_;
  size_t max_sets_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::string error_;
};

}  // namespace

absl::StatusOr<std::vector<ModelSet>> ExpandSetExpression(
    absl::string_view expr,
    const std::function<std::optional<std::string>(const std::string&)>& name,
    const std::function<const std::vector<ModelSet>*(const std::string&)>& set,
    size_t max_sets) {
  return Parser(expr, name, set, max_sets).Parse();
}

}  // namespace modelplane::config
