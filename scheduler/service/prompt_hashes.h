// Content hashes of a prompt's full KV blocks, chained as the workers'
// prefix caches chain them (kvcache HashBlockTokens), for prefix-aware
// dispatch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ferry {

// Used for workers that do not report their own chain root: the scheduler
// then only matches prompts against the prompts it sent there itself.
inline constexpr uint64_t kSchedulerBlockHashRoot = 0x5343'4845'4452'4f4fULL;

std::vector<uint64_t> PromptBlockHashes(std::span<const int32_t> prompt_ids, int block_size, uint64_t root);

}  // namespace ferry
