#include "scheduler/service/prompt_hashes.h"

#include "kvcache/block_pool.h"

namespace ferry {

std::vector<uint64_t> PromptBlockHashes(std::span<const int32_t> prompt_ids, int block_size, uint64_t root) {
  std::vector<uint64_t> out;
  if (block_size <= 0) return out;
  const size_t full = prompt_ids.size() / static_cast<size_t>(block_size);
  out.reserve(full);
  uint64_t parent = root;
  for (size_t i = 0; i < full; ++i) {
    parent = HashBlockTokens(parent, prompt_ids.subspan(i * block_size, block_size), /*extra_key=*/0);
    out.push_back(parent);
  }
  return out;
}

}  // namespace ferry
