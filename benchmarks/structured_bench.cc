// ferry-structured-bench: what structured output costs per generated token.
// Loads a model's tokenizer (GGUF), builds the vocabulary trie, then for
// each specification follows a conforming text token by token as the
// engine does: the allowed-token mask of the state (FillAllowed), a check
// that the next token is in it, then Accept. Prints the trie build time and
// the mask time per token (mean, p50, p99, max) for each specification, as
// the engine runs it (masks of states seen before are reused) and computed
// from scratch for every token (the mean; the worst case).
//
//   ferry-structured-bench MODEL.gguf [--repeats 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/structured/grammar.h"
#include "engine/structured/structured_output.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
using ferry::structured::OutputSpec;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Case {
  const char* name;
  OutputSpec spec;
  std::string text;  // a conforming output
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ferry-structured-bench MODEL.gguf [--repeats N]\n");
    return 2;
  }
  int repeats = 5;
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::max(1, std::atoi(argv[i + 1]));
  }
  auto gguf = ferry::GgufFile::Open(argv[1]);
  if (!gguf.ok()) {
    std::fprintf(stderr, "%s\n", std::string(gguf.status().message()).c_str());
    return 1;
  }
  auto tok = ferry::Tokenizer::FromGguf(**gguf);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  const ferry::Tokenizer& t = **tok;
  auto t0 = Clock::now();
  std::vector<std::string> bytes(static_cast<size_t>(t.vocab_size()));
  for (int32_t id = 0; id < t.vocab_size(); ++id) {
    if (!t.IsControl(id)) bytes[static_cast<size_t>(id)] = t.TokenBytes(id);
  }
  ferry::structured::TokenTrie trie(bytes);
  std::printf("vocabulary %d tokens, trie built in %.1f ms\n", t.vocab_size(),
              Ms(Clock::now() - t0));

  const std::vector<Case> cases = {
      {"json_schema (object, 6 properties)",
       {OutputSpec::Kind::kJsonSchema,
        R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
            "email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"}},
            "score":{"type":"number"},"active":{"type":"boolean"}},
            "required":["name","age","email","tags","score","active"]})",
        {}},
       R"({"name": "Ada Lovelace, first of the programmers", "age": 36, "email": "ada@example.org", )"
       R"("tags": ["math", "engines", "poetry of science"], "score": 99.5, "active": true})"},
      {"json_object (any)",
       {OutputSpec::Kind::kJsonObject, "", {}},
       R"({"story": "Once upon a time there was a little girl named Lily.", "moral": ["share", "be kind"], )"
       R"("n": [1, 2, 3], "nested": {"a": {"b": null}}})"},
      {"regex (phone number)",
       {OutputSpec::Kind::kRegex, R"(\+1 \(\d{3}\) \d{3}-\d{4})", {}},
       "+1 (555) 123-4567"},
  };
  std::printf("%-36s %7s %9s %9s %9s %9s %14s\n", "specification", "tokens", "mean ms", "p50 ms",
              "p99 ms", "max ms", "uncached mean");
  for (const Case& c : cases) {
    auto grammar = ferry::structured::Compile(c.spec);
    if (!grammar.ok()) {
      std::fprintf(stderr, "%s: %s\n", c.name, std::string(grammar.status().message()).c_str());
      return 1;
    }
    const std::vector<int32_t> ids =
        t.Encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    std::vector<double> times;
    double uncached = 0;
    std::vector<uint64_t> allowed;
    for (int r = 0; r < repeats; ++r) {
      ferry::structured::Matcher m(*grammar);
      for (int32_t id : ids) {
        ferry::structured::Matcher fresh = m;
        fresh.ClearMaskCache();
        auto s = Clock::now();
        fresh.FillAllowed(trie, &allowed);
        uncached += Ms(Clock::now() - s);
        s = Clock::now();
        m.FillAllowed(trie, &allowed);
        times.push_back(Ms(Clock::now() - s));
        if (!((allowed[static_cast<size_t>(id) / 64] >> (id % 64)) & 1)) {
          std::fprintf(stderr, "%s: token %d ('%s') of the text is not allowed\n", c.name, id,
                       t.TokenBytes(id).c_str());
          return 1;
        }
        if (!m.Accept(t.TokenBytes(id))) return 1;
      }
      if (!m.CanEnd()) {
        std::fprintf(stderr, "%s: the text is not a complete match\n", c.name);
        return 1;
      }
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double sum = 0;
    for (double x : times) sum += x;
    auto pct = [&](double p) {
      return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))];
    };
    std::printf("%-36s %7zu %9.3f %9.3f %9.3f %9.3f %14.3f\n", c.name, ids.size(),
                sum / times.size(), pct(0.5), pct(0.99), sorted.back(), uncached / times.size());
  }
  return 0;
}
