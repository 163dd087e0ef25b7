#include "engine/structured/gbnf.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/chat_template/utf8.h"
#include "engine/structured/regex.h"

namespace ferry::structured {
namespace {

constexpr int kMaxRepeat = 1000;
constexpr int kMaxNesting = 200;

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : s_(text) {}

  absl::StatusOr<std::shared_ptr<const Grammar>> Run() {
    while (true) {
      SkipSpace(/*newlines=*/true);
      if (AtEnd()) break;
      const std::string name = Name();
      if (name.empty()) return Error("a rule name expected");
      SkipSpace(false);
      if (s_.substr(i_, 3) != "::=")
        return Error(absl::StrCat("'::=' expected after '", name, "'"));
      i_ += 3;
      SkipSpace(true);
      if (!defined_.insert(name).second)
        return Error(absl::StrCat("rule '", name, "' is defined twice"));
      auto alts = Alternates(/*nested=*/false);
      if (!alts.ok()) return alts.status();
      const int rule = RuleFor(name);
      for (Sequence& alt : *alts) b_.AddAlternative(rule, std::move(alt));
      SkipSpace(false);
      if (!AtEnd() && s_[i_] != '\n' && s_[i_] != '\r')
        return Error("unexpected text after the rule");
    }
    for (const auto& [name, rule] : rules_) {
      if (!defined_.contains(name))
        return absl::InvalidArgumentError(
            absl::StrCat("grammar: rule '", name, "' is not defined"));
    }
    auto root = rules_.find("root");
    if (root == rules_.end()) return absl::InvalidArgumentError("grammar: no 'root' rule");
    auto g = b_.Build(root->second);
    if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat("grammar: ", g.status().message()));
    return g;
  }

 private:
  bool AtEnd() const { return i_ >= s_.size(); }

  absl::Status Error(std::string_view what) const {
    int line = 1;
    for (size_t k = 0; k < i_ && k < s_.size(); ++k) line += s_[k] == '\n';
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: ", std::string(what), " (line ", line, ")"));
  }

  void SkipSpace(bool newlines) {
    while (!AtEnd()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++i_;
      } else if (c == '#') {
        while (!AtEnd() && s_[i_] != '\n') ++i_;
      } else {
        break;
      }
    }
  }

  std::string Name() {
    const size_t start = i_;
    while (!AtEnd() &&
           (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' || s_[i_] == '_'))
      ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  int RuleFor(const std::string& name) {
    auto [it, inserted] = rules_.try_emplace(name, 0);
    if (inserted) it->second = b_.NewRule();
    return it->second;
  }

  absl::StatusOr<std::vector<Sequence>> Alternates(bool nested) {
    std::vector<Sequence> alts;
    while (true) {
      auto seq = Seq(nested);
      if (!seq.ok()) return seq.status();
      alts.push_back(std::move(*seq));
      SkipSpace(nested);
      if (AtEnd() || s_[i_] != '|') break;
      ++i_;
      SkipSpace(true);
    }
    return alts;
  }

  absl::StatusOr<Sequence> Literal() {  // after the opening quote
    std::string bytes;
    while (true) {
      if (AtEnd()) return Error("an unterminated string");
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        break;
      }
      if (c == '\n') return Error("a newline inside a string");
      if (c == '\\') {
        ++i_;
        auto cp = ParseEscape(s_, &i_);
        if (!cp.ok()) return Error(std::string(cp.status().message()));
        chat_template::AppendUtf8(*cp, bytes);
      } else {
        bytes.push_back(c);
        ++i_;
      }
    }
    return b_.Literal(bytes);
  }

  absl::StatusOr<Sequence> Primary() {
    const char c = s_[i_];
    if (c == '"') {
      ++i_;
      return Literal();
    }
    if (c == '[') {
      ++i_;
      auto cls = AddCharClass(s_, &i_, b_);
      if (!cls.ok()) return Error(std::string(cls.status().message()));
      return cls;
    }
    if (c == '.') {
      ++i_;
      return AddRegex("[\\s\\S]", b_);
    }
    if (c == '(') {
      ++i_;
      if (++nesting_ > kMaxNesting) return Error("groups nested too deeply");
      SkipSpace(true);
      auto alts = Alternates(/*nested=*/true);
      --nesting_;
      if (!alts.ok()) return alts.status();
      SkipSpace(true);
      if (AtEnd() || s_[i_] != ')') return Error("')' expected");
      ++i_;
      return Sequence{GrammarBuilder::Ref(b_.Choice(*std::move(alts)))};
    }
    const std::string name = Name();
    if (name.empty()) return Error(absl::StrCat("unexpected '", std::string(1, c), "'"));
    return Sequence{GrammarBuilder::Ref(RuleFor(name))};
  }

  absl::StatusOr<int> Count() {
    if (AtEnd() || !std::isdigit(static_cast<unsigned char>(s_[i_])))
      return Error("a repetition count expected");
    int v = 0;
    while (!AtEnd() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      v = v * 10 + (s_[i_++] - '0');
      if (v > kMaxRepeat) return Error(absl::StrCat("a repetition count over ", kMaxRepeat));
    }
    return v;
  }

  absl::StatusOr<Sequence> Seq(bool nested) {
    Sequence seq;
    while (true) {
      SkipSpace(nested);
      if (AtEnd()) break;
      const char c = s_[i_];
      if (c == '|' || c == ')' || c == '\n' || c == '\r') break;
      // The next rule's "name ::=" ends this one when a newline came first
      // (handled by the caller), so a name here is a reference.
      auto item = Primary();
      if (!item.ok()) return item.status();
      Sequence part = std::move(*item);
      while (!AtEnd() && (s_[i_] == '*' || s_[i_] == '+' || s_[i_] == '?' || s_[i_] == '{')) {
        int min = 0, max = -1;
        const char q = s_[i_++];
        if (q == '+') {
          min = 1;
        } else if (q == '?') {
          max = 1;
        } else if (q == '{') {
          SkipSpace(false);
          auto lo = Count();
          if (!lo.ok()) return lo.status();
          min = max = *lo;
          SkipSpace(false);
          if (!AtEnd() && s_[i_] == ',') {
            ++i_;
            SkipSpace(false);
            max = -1;
            if (!AtEnd() && s_[i_] != '}') {
              auto hi = Count();
              if (!hi.ok()) return hi.status();
              max = *hi;
              if (max < min) return Error("a repetition {m,n} with n < m");
            }
          }
          SkipSpace(false);
          if (AtEnd() || s_[i_] != '}') return Error("'}' expected");
          ++i_;
        }
        part = {GrammarBuilder::Ref(b_.Repeat(part, min, max))};
      }
      seq.insert(seq.end(), part.begin(), part.end());
    }
    return seq;
  }

  std::string_view s_;
  size_t i_ = 0;
  int nesting_ = 0;
  GrammarBuilder b_;
  absl::flat_hash_map<std::string, int> rules_;
  absl::flat_hash_set<std::string> defined_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> CompileGbnf(std::string_view text) {
  return GbnfParser(text).Run();
}

}  // namespace ferry::structured
