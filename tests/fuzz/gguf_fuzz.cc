// Fuzz target: GgufFile::Parse on arbitrary bytes must return an error or a
// file whose every view (tensor data, strings, arrays) lies inside the input.
#include <cstddef>
#include <cstdint>

#include "engine/formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ferry::GgufFile::Parse({data, size}, "fuzz.gguf");
  if (!file.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const ferry::GgufTensorInfo& t : (*file)->tensors()) {
    if (t.num_bytes == 0) continue;
    sink = sink ^ t.data[0] ^ t.data[t.num_bytes - 1];
  }
  for (const auto& [key, value] : (*file)->metadata()) {
    if (!value.str.empty()) sink = sink ^ value.str.front() ^ value.str.back();
    for (std::string_view s : value.strings) {
      if (!s.empty()) sink = sink ^ s.front() ^ s.back();
    }
    // The typed getters decode every element of numeric arrays.
    if (value.type == ferry::GgufType::kArray) {
      (void)(*file)->GetIntArray(key);
      (void)(*file)->GetFloatArray(key);
      (void)(*file)->GetStringArray(key);
    } else {
      (void)(*file)->GetInt(key);
      (void)(*file)->GetFloat(key);
      (void)(*file)->GetString(key);
      (void)(*file)->GetBool(key);
    }
  }
  return 0;
}
