// Fuzz target: ParseConfig (the --config reader of every ferry role) on
// arbitrary bytes must return an error or entries with plain flag-name keys,
// each key once.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "tools/config_file.h"

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
    if (e.value.size() > size) std::abort();
  }
  return 0;
}
