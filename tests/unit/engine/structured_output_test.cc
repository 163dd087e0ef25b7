// Grammars from JSON schemas, regexes and choices: which texts they accept,
// and the token masks the matcher derives from a vocabulary.
#include "engine/structured/structured_output.h"

#include <random>
#include <string>
#include <vector>

#include "engine/structured/grammar.h"
#include "engine/structured/regex.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ferry::structured {
namespace {

std::shared_ptr<const Grammar> Schema(const std::string& schema) {
  auto g = Compile({OutputSpec::Kind::kJsonSchema, schema, {}});
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

std::shared_ptr<const Grammar> Regex(const std::string& re) {
  auto g = Compile({OutputSpec::Kind::kRegex, re, {}});
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

// The whole text is accepted and the match may end there.
bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g);
  return m.Accept(text) && m.CanEnd();
}

// A prefix the grammar can still complete.
bool Viable(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  return Matcher(g).Accept(text);
}

TEST(StructuredOutputTest, ObjectWithRequiredAndOptionalProperties) {
  auto g =
      Schema(R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
      "ok":{"type":"boolean"}},"required":["name"]})");
  EXPECT_TRUE(Matches(g, R"({"name":"Bo"})"));
  EXPECT_TRUE(Matches(g, R"({"name":"Bo","age":3,"ok":true})"));
  EXPECT_TRUE(Matches(g, R"({ "name" : "Bo" , "ok" : false })"));
  EXPECT_FALSE(Matches(g, "{\n  \"name\": \"Bo\"\n}"));  // compact: one space at most
  EXPECT_TRUE(Matches(g, R"( {"name":"a\"b\\c\u00e9", "age": -12})"));
  EXPECT_TRUE(Matches(g, "{\"name\":\"h\xC3\xA9llo \xE2\x82\xAC\"}"));
  EXPECT_FALSE(Matches(g, R"({"age":3})"));             // name is required
  EXPECT_FALSE(Matches(g, R"({"age":3,"name":"x"})"));  // properties in schema order
  EXPECT_FALSE(Matches(g, R"({"name":"Bo",})"));
  EXPECT_FALSE(Matches(g, R"({"name":"Bo","extra":1})"));
  EXPECT_FALSE(Matches(g, R"({"name":"Bo","age":1.5})"));
  EXPECT_FALSE(Matches(g, R"({"name":"Bo","age":01})"));
  EXPECT_FALSE(Matches(g, "{\"name\":\"a\nb\"}"));  // raw control character
  EXPECT_FALSE(Matches(g, R"({"name":"Bo"})"
                          " "));  // nothing after the value
  EXPECT_FALSE(Matches(g, R"({"name":"Bo")"));
  EXPECT_TRUE(Viable(g, R"({"name":"Bo")"));
}

TEST(StructuredOutputTest, PropertiesKeepTheSchemaOrder) {
  auto g = Schema(R"({"type":"object","properties":{"zeta":{"type":"null"},"alpha":{"type":"null"}},
      "required":["zeta","alpha"]})");
  EXPECT_TRUE(Matches(g, R"({"zeta":null,"alpha":null})"));
  EXPECT_FALSE(Matches(g, R"({"alpha":null,"zeta":null})"));
}

TEST(StructuredOutputTest, ArraysEnumsConstAndNesting) {
  auto g = Schema(R"({"type":"array","items":{"type":"object","properties":{
      "color":{"enum":["red","green",3,null]},"v":{"const":{"a":[1,2]}}},"required":["color"]},
      "minItems":1,"maxItems":2})");
  EXPECT_TRUE(Matches(g, R"([{"color":"red"}])"));
  EXPECT_TRUE(Matches(g, R"([{"color":3},{"color":null,"v":{"a":[1,2]}}])"));
  EXPECT_FALSE(Matches(g, "[]"));
  EXPECT_FALSE(Matches(g, R"([{"color":"red"},{"color":"red"},{"color":"red"}])"));
  EXPECT_FALSE(Matches(g, R"([{"color":"blue"}])"));
  EXPECT_FALSE(Matches(g, R"([{"color":"red","v":{"a":[1]}}])"));
}

TEST(StructuredOutputTest, NumbersStringsAndFormats) {
  auto g = Schema(
      R"({"type":"object","properties":{"x":{"type":"number"},"n":{"type":"integer","minimum":0},
      "s":{"type":"string","minLength":2,"maxLength":3},"d":{"type":"string","format":"date"},
      "p":{"type":"string","pattern":"^[A-Z]{2}-\\d+$"}},"required":["x","n","s","d","p"]})");
  EXPECT_TRUE(Matches(g, R"({"x":-1.5e+3,"n":0,"s":"ab","d":"2024-02-29","p":"AB-12"})"));
  EXPECT_TRUE(Matches(g, R"({"x":0.25,"n":42,"s":"\u00e9\n\"","d":"1999-12-31","p":"ZZ-0"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1,"n":-1,"s":"ab","d":"2024-02-29","p":"AB-12"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1,"n":1,"s":"a","d":"2024-02-29","p":"AB-12"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1,"n":1,"s":"abcd","d":"2024-02-29","p":"AB-12"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1,"n":1,"s":"ab","d":"2024-13-01","p":"AB-12"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1,"n":1,"s":"ab","d":"2024-02-29","p":"Ab-12"})"));
  EXPECT_FALSE(Matches(g, R"({"x":1.,"n":1,"s":"ab","d":"2024-02-29","p":"AB-12"})"));
}

TEST(StructuredOutputTest, RefsAnyOfAndRecursion) {
  auto g = Schema(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},
      "anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]})");
  EXPECT_TRUE(Matches(g, "null"));
  EXPECT_TRUE(Matches(g, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
  EXPECT_FALSE(Matches(g, R"({"v":1,"kids":[{"w":2}]})"));
}

TEST(StructuredOutputTest, TypeListsAndAdditionalProperties) {
  auto g = Schema(R"({"type":["string","null"]})");
  EXPECT_TRUE(Matches(g, R"("x")"));
  EXPECT_TRUE(Matches(g, "null"));
  EXPECT_FALSE(Matches(g, "1"));
  auto map = Schema(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(Matches(map, R"({"a":1,"b":2})"));
  EXPECT_TRUE(Matches(map, "{}"));
  EXPECT_FALSE(Matches(map, R"({"a":"x"})"));
  auto open = Schema(
      R"({"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true})");
  EXPECT_TRUE(Matches(open, R"({"a":1,"zz":[true,{"q":null}]})"));
  EXPECT_TRUE(Matches(open, R"({"zz":"only extra"})"));
}

TEST(StructuredOutputTest, AnyJsonObject) {
  auto g = Compile({OutputSpec::Kind::kJsonObject, "", {}});
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(Matches(*g, R"({"a":[1,2.5,-3e2,"x",true,false,null,{}],"b":{"c":[]}})"));
  EXPECT_TRUE(Matches(*g, "{}"));
  EXPECT_FALSE(Matches(*g, "[1]"));
  EXPECT_FALSE(Matches(*g, R"({"a":tru})"));
  EXPECT_FALSE(Matches(*g, R"({a:1})"));
  // Whitespace is bounded, so a model cannot pad forever.
  EXPECT_FALSE(Viable(*g, "{  "));
}

TEST(StructuredOutputTest, BadSchemasAreErrors) {
  for (const char* bad :
       {R"({"type":"strin"})", R"({"$ref":"#/nowhere"})", R"({"$ref":"http://x/y"})",
        R"({"type":"object","properties":{"a":{}},"required":["b"]})", "false", "[1]",
        R"({"enum":[]})", R"({"type":"string","maxLength":-1})",
        R"({"type":"string","pattern":"a(b"})", R"({"allOf":[{},{}]})", "{not json"}) {
    auto g = Compile({OutputSpec::Kind::kJsonSchema, bad, {}});
    EXPECT_FALSE(g.ok()) << bad;
    if (!g.ok()) EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  }
  // Nesting beyond the limit is an error, not a stack overflow.
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += R"({"type":"array","items":)";
  deep += "{}";
  for (int i = 0; i < 10000; ++i) deep += "}";
  EXPECT_FALSE(Compile({OutputSpec::Kind::kJsonSchema, deep, {}}).ok());
}

TEST(StructuredOutputTest, Regexes) {
  auto g = Regex(R"((\+1 )?\(\d{3}\) \d{3}-\d{4})");
  EXPECT_TRUE(Matches(g, "(555) 123-4567"));
  EXPECT_TRUE(Matches(g, "+1 (555) 123-4567"));
  EXPECT_FALSE(Matches(g, "(555) 123-456"));
  auto words = Regex("(cat|dog)s?|[^a-z\\n]{2,}");
  EXPECT_TRUE(Matches(words, "cats"));
  EXPECT_TRUE(Matches(words, "dog"));
  EXPECT_TRUE(Matches(words, "\xC3\xA9\xE2\x82\xAC!"));  // non-ASCII code points outside [a-z]
  EXPECT_FALSE(Matches(words, "Ab"));
  EXPECT_FALSE(Matches(words, "x"));
  auto dot = Regex("a.c");
  EXPECT_TRUE(Matches(dot,
                      "a\xF0\x9F\x98\x80"
                      "c"));  // one code point, four bytes
  EXPECT_FALSE(Matches(dot, "a\nc"));
  EXPECT_FALSE(Matches(dot,
                       "a\xC3"
                       "c"));     // a broken UTF-8 sequence
  auto nested = Regex("(a*)*b");  // nullable loops terminate
  EXPECT_TRUE(Matches(nested, "aaab"));
  EXPECT_TRUE(Matches(nested, "b"));
  for (const char* bad :
       {"a(b", "a)b", "[a-", "\\1", "(?=a)", "a{3,1}", "*a", "\\bword", "a{2000}", "[z-a]"}) {
    EXPECT_FALSE(Compile({OutputSpec::Kind::kRegex, bad, {}}).ok()) << bad;
  }
}

std::shared_ptr<const Grammar> Gbnf(const std::string& text) {
  auto g = Compile({OutputSpec::Kind::kGrammar, text, {}});
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

TEST(StructuredOutputTest, GbnfGrammars) {
  // An arithmetic grammar as llama.cpp ships it (right-recursive), with
  // comments, classes, groups, escapes and bounded repetition.
  auto g = Gbnf(R"G(# arithmetic
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] ws term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]{0,7} ws
num   ::= [0-9]+ ws
ws    ::= [ \t]*
)G");
  EXPECT_TRUE(Matches(g, "1+2*x=3\n"));
  EXPECT_TRUE(Matches(g, "(a + b_1) * 2 = c\nz=0\n"));
  EXPECT_FALSE(Matches(g, "1+=3\n"));
  EXPECT_FALSE(Matches(g, "abcdefghij=1\n"));  // identifiers of at most 8 characters
  EXPECT_FALSE(Matches(g, "1=2"));             // the newline is required
  auto any = Gbnf("root ::= \"<\" . . \">\" \"\\u00e9\"?\n");
  EXPECT_TRUE(Matches(any, "<\xE2\x82\xAC\n>"));  // '.' is any one character
  EXPECT_TRUE(Matches(any, "<ab>\xC3\xA9"));
  EXPECT_FALSE(Matches(any, "<a>"));
  auto multi = Gbnf("root ::= item (\n  \",\" item\n)*\nitem ::= \"x\" | \"y\"");
  EXPECT_TRUE(Matches(multi, "x,y,x"));
  for (const char* bad :
       {"", "root ::= missing", "other ::= \"a\"", "root ::= \"a", "root ::= [a-",
        "root ::= (\"a\"", "root ::= \"a\"\nroot ::= \"b\"", "root = \"a\"", "root ::= \"a\"{3,1}",
        "root ::= root \"a\" | \"b\"", "root ::= x\nx ::= y \"a\"\ny ::= x | \"b\"",
        "root ::= x\nx ::= \"a\"? x \"b\" | \"c\""}) {
    auto r = Compile({OutputSpec::Kind::kGrammar, bad, {}});
    EXPECT_FALSE(r.ok()) << bad;
  }
  // Recursion that is not on the left is fine.
  auto nested = Gbnf("root ::= \"(\" root \")\" | \"x\"");
  EXPECT_TRUE(Matches(nested, "((x))"));
  EXPECT_FALSE(Matches(nested, "((x)"));
}

TEST(StructuredOutputTest, Utf8RangesCoverExactlyTheCodePoints) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    uint32_t lo = rng() % 0x110000, hi = rng() % 0x110000;
    if (trial % 3 == 0) hi = std::min<uint32_t>(lo + rng() % 300, 0x10FFFF);
    if (lo > hi) std::swap(lo, hi);
    const auto seqs = Utf8Ranges(lo, hi);
    for (int k = 0; k < 50; ++k) {
      uint32_t cp = rng() % 0x110000;
      if (k % 2 == 0 && hi > lo) cp = lo + rng() % (hi - lo + 1);
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      std::string enc;
      if (cp < 0x80) {
        enc = std::string(1, static_cast<char>(cp));
      } else if (cp < 0x800) {
        enc = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
      } else if (cp < 0x10000) {
        enc = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
               static_cast<char>(0x80 | (cp & 0x3F))};
      } else {
        enc = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
               static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
      }
      bool covered = false;
      for (const auto& seq : seqs) {
        if (seq.size() != enc.size()) continue;
        bool all = true;
        for (size_t i = 0; i < seq.size(); ++i) {
          const auto b = static_cast<uint8_t>(enc[i]);
          all = all && b >= seq[i].first && b <= seq[i].second;
        }
        covered = covered || all;
      }
      EXPECT_EQ(covered, cp >= lo && cp <= hi) << std::hex << lo << ".." << hi << " cp " << cp;
    }
  }
}

TEST(StructuredOutputTest, ChoiceAndTokenMasks) {
  auto g = Compile({OutputSpec::Kind::kChoice, "", {"yes", "no", "not sure"}});
  ASSERT_TRUE(g.ok());
  // A small vocabulary: token i is vocab[i].
  const std::vector<std::string> vocab = {"",      "y", "yes", "n", "no",        "not",
                                          " sure", "o", "es",  "x", "not sure!", "s"};
  TokenTrie trie(vocab);
  Matcher m(*g);
  std::vector<uint64_t> allowed;
  auto allowed_ids = [&] {
    m.FillAllowed(trie, &allowed);
    std::vector<int> ids;
    for (int t = 0; t < static_cast<int>(vocab.size()); ++t) {
      if ((allowed[static_cast<size_t>(t) / 64] >> (t % 64)) & 1) ids.push_back(t);
    }
    return ids;
  };
  EXPECT_EQ(allowed_ids(), (std::vector<int>{1, 2, 3, 4, 5}));
  ASSERT_TRUE(m.Accept("n"));
  EXPECT_EQ(allowed_ids(), (std::vector<int>{7}));  // "o"; "ot sure" has no token
  ASSERT_TRUE(m.Accept("o"));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.Done());              // "not sure" is still possible
  EXPECT_TRUE(allowed_ids().empty());  // no token is "t" or "t sure"
  ASSERT_TRUE(m.Accept("t"));
  EXPECT_EQ(allowed_ids(), (std::vector<int>{6}));
  ASSERT_TRUE(m.Accept(" sure"));
  EXPECT_TRUE(m.Done());
  EXPECT_TRUE(allowed_ids().empty());
  EXPECT_FALSE(m.Accept("x"));
  EXPECT_TRUE(m.Done());  // a rejected byte leaves the state as it was
}

// The mask equals checking every token on its own, on a random vocabulary
// and schema-driven texts.
TEST(StructuredOutputTest, MaskEqualsCheckingEachToken) {
  auto g = Schema(R"({"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array",
      "items":{"type":"string","maxLength":4}},"mood":{"enum":["happy","sad"]}},"required":["id","mood"]})");
  const std::string target = R"({"id": 123, "tags": ["ab", "cdef"], "mood": "sad"})";
  std::mt19937 rng(3);
  std::vector<std::string> vocab = {""};
  const std::string alphabet = "{}[]\":, abcdefhpsty0123456789-.\\";
  for (int i = 0; i < 400; ++i) {
    std::string t;
    const int len = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < len; ++k) t += alphabet[rng() % alphabet.size()];
    vocab.push_back(t);
  }
  for (size_t i = 0; i < target.size(); ++i) vocab.push_back(target.substr(i, 1));
  TokenTrie trie(vocab);
  Matcher m(g);
  std::vector<uint64_t> allowed;
  for (size_t pos = 0; pos <= target.size(); ++pos) {
    m.FillAllowed(trie, &allowed);
    for (size_t t = 1; t < vocab.size(); ++t) {
      Matcher copy = m;
      const bool expect = copy.Accept(vocab[t]);
      EXPECT_EQ(((allowed[t / 64] >> (t % 64)) & 1) != 0, expect)
          << "at " << pos << " token '" << vocab[t] << "'";
    }
    if (pos < target.size()) ASSERT_TRUE(m.Accept(target.substr(pos, 1))) << pos;
  }
  EXPECT_TRUE(m.Done());
}

TEST(StructuredOutputTest, DeepNestingStaysBounded) {
  auto g = Compile({OutputSpec::Kind::kJsonObject, "", {}});
  ASSERT_TRUE(g.ok());
  Matcher m(*g);
  ASSERT_TRUE(m.Accept("{\"a\":"));
  int accepted = 0;
  for (int i = 0; i < 20000 && m.Accept("["); ++i) ++accepted;
  EXPECT_LT(accepted, 20000);  // stacks deeper than the limit are dropped
  EXPECT_LT(m.num_nodes(), 200000u);
}

}  // namespace
}  // namespace ferry::structured
