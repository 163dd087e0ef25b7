// Fuzz target: structured-output specifications from clients (JSON schemas,
// regexes and GBNF grammars) compiled to grammars, then text and a small vocabulary run
// through the matcher: any bytes give a grammar or an error, never a crash,
// a hang or unbounded memory.
//
// Input: one byte picks the kind (modulo 3: JSON schema, regex, GBNF
// grammar), then the specification, then after a NUL the text to match.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/structured/grammar.h"
#include "engine/structured/structured_output.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 14)) return 0;
  using ferry::structured::OutputSpec;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = rest.find('\0');
  std::string spec_text(rest.substr(0, nul));
  std::string text =
      nul == std::string_view::npos ? std::string() : std::string(rest.substr(nul + 1));
  OutputSpec spec{
      data[0] % 2 == 0 ? OutputSpec::Kind::kJsonSchema : OutputSpec::Kind::kRegex, spec_text, {}};
  auto grammar = ferry::structured::Compile(spec);
  if (!grammar.ok()) return 0;
  static const ferry::structured::TokenTrie trie(
      std::vector<std::string>{"", "{", "}", "\"", ":", ",", " ", "a", "ab", "0", "12", "-", "[",
                               "]", "true", "null", "\\", "\xC3\xA9", "x"});
  ferry::structured::Matcher m(*grammar);
  std::vector<uint64_t> allowed;
  m.FillAllowed(trie, &allowed);
  for (size_t i = 0; i < text.size() && i < 3 * 16; i += 3) {
    (void)m.Accept(text.substr(i, 3));
    m.FillAllowed(trie, &allowed);
    (void)m.CanEnd();
  }
  return 0;
}
