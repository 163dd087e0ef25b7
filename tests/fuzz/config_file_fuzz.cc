// Fuzz target: ParseConfig (the --config reader of every ferry role) on
// arbitrary bytes must return an error or entries with plain flag-name keys,
// each key once, and values no longer than the input, except a JSON number,
// which is printed again in its normal form (5e9 becomes 5000000000.0): at
// most the 24 characters of -1.7976931348623157e+308.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "tools/config_file.h"

namespace {

// A whole string strtod reads as one number, in the length a printed double
// or 64-bit integer can have.
bool IsPrintedNumber(const std::string& v) {
  if (v.empty() || v.size() > 24) return false;
  char* end = nullptr;
  std::strtod(v.c_str(), &end);
  return end == v.c_str() + v.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto entries = ferry::ParseConfig(text);
  if (!entries.ok()) {
    if (entries.status().message().empty()) std::abort();
    return 0;
  }
  std::set<std::string> keys;
  for (const ferry::ConfigEntry& e : *entries) {
    if (e.key.empty() || e.key.find('_') != std::string::npos) std::abort();
    if (!keys.insert(e.key).second) std::abort();
    if (e.value.size() > size && !IsPrintedNumber(e.value)) std::abort();
  }
  return 0;
}
