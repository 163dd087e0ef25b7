#include "benchmarks/sim/sim_block_hashes.h"

namespace ferry::sim {
namespace {

// SplitMix64's finalizer: one well-mixed 64-bit value per input.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t Combine(uint64_t a, uint64_t b) { return Mix(a ^ Mix(b)); }

// Separate name spaces for shared pieces and a request's own blocks.
constexpr uint64_t kSharedSalt = 0x5348415245440000ull;
constexpr uint64_t kOwnSalt = 0x4f574e0000000000ull;

}  // namespace

std::vector<uint64_t> SimBlockHashes(const loadgen::BenchRequest& request, uint64_t request_index,
                                     int block_size) {
  std::vector<uint64_t> out;
  if (request.hash_ids.empty() || request.hash_block_tokens <= 0 || block_size <= 0) return out;
  const int64_t num_blocks = request.input_tokens / block_size;
  const int64_t piece_tokens = request.hash_block_tokens;
  const int64_t shared_tokens = static_cast<int64_t>(request.hash_ids.size()) * piece_tokens;
  out.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = 0; b < num_blocks; ++b) {
    const int64_t last_token = (b + 1) * block_size - 1;
    const uint64_t position = static_cast<uint64_t>(b);
    if (last_token < shared_tokens) {
      out.push_back(
          Combine(Combine(kSharedSalt, request.hash_ids[last_token / piece_tokens]), position));
    } else {
      out.push_back(Combine(Combine(kOwnSalt, request_index), position));
    }
  }
  return out;
}

}  // namespace ferry::sim
