// Fuzz target: Llama2cCheckpoint::Parse on arbitrary bytes must return an
// error or tensors whose byte ranges lie inside the input, and Sniff must
// accept whatever Parse accepts.
#include <cstddef>
#include <cstdint>

#include "engine/formats/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool sniffed = ferry::Llama2cCheckpoint::Sniff({data, size}, size);
  auto checkpoint = ferry::Llama2cCheckpoint::Parse({data, size}, "fuzz.bin");
  if (!checkpoint.ok()) return 0;
  if (!sniffed) __builtin_trap();
  volatile uint8_t sink = 0;
  for (const ferry::Llama2cTensor& t : (*checkpoint)->tensors()) {
    if (t.data < data || t.data + t.num_bytes > data + size) __builtin_trap();
    if (t.num_bytes == 0) continue;
    sink = sink ^ t.data[0] ^ t.data[t.num_bytes - 1];
    if ((*checkpoint)->Find(t.name) != &t) __builtin_trap();
  }
  return 0;
}
