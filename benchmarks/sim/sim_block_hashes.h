// The block hashes a simulated prompt carries: one per full block of the
// simulator's block size, equal for two prompts exactly where the dataset
// says they share everything up to the end of that block (the prefix set's
// system prompts, a Mooncake trace's hash_ids). They stand in for the
// engine's chained content hashes, which need the tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "benchmarks/loadgen/dataset.h"

namespace ferry::sim {

// Hashes for the full blocks of `request`'s prompt (input_tokens long):
// a block that ends inside the shared pieces (request.hash_ids) is named by
// the piece it ends in and its position; every later block is the
// request's own, named by `request_index`. Empty when the request carries
// no hash_ids: nothing is shared, so nothing is worth caching.
std::vector<uint64_t> SimBlockHashes(const loadgen::BenchRequest& request, uint64_t request_index,
                                     int block_size);

}  // namespace ferry::sim
