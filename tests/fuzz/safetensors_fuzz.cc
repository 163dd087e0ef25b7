// Fuzz target: SafetensorsFile::Parse on arbitrary bytes must return an error
// or tensors whose byte ranges lie inside the input.
#include <cstddef>
#include <cstdint>

#include "engine/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ferry::SafetensorsFile::Parse({data, size}, "fuzz.safetensors");
  if (!file.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const ferry::SafetensorsTensor& t : (*file)->tensors()) {
    if (t.num_bytes == 0) continue;
    sink = sink ^ t.data[0] ^ t.data[t.num_bytes - 1];
    if ((*file)->Find(t.name) == nullptr) __builtin_trap();
  }
  for (const auto& [key, value] : (*file)->metadata()) {
    if (!value.empty()) sink = sink ^ static_cast<uint8_t>(value.back());
  }
  return 0;
}
