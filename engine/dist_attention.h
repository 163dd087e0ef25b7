// DistAttention on the CPU backend: a request whose context does not fit its
// worker's KV pool keeps positions [0, local_tokens) in its own blocks and
// the rest in blocks borrowed from other workers (lenders). Per layer and
// step, the owner sends each lender the step's queries and the new keys and
// values of the positions it holds; the lender writes them, attends over its
// blocks (causally, by position) and returns partial results that the owner
// merges exactly with its own (engine/partial_attention.h).
//
// This header holds what the forward pass and the lender compute need; the
// transport lives in engine/service (dist_attention_client, _lender).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "engine/model_config.h"
#include "engine/partial_attention.h"
#include "kvcache/kv_cache.h"

namespace ferry {

// The remote part of one request's KV, as the owner's step loop sees it.
// Called on the step loop only, one layer at a time: Send, then Receive.
class RemoteKv {
 public:
  virtual ~RemoteKv() = default;
  // Positions below this are in the owner's own blocks.
  virtual int32_t local_tokens() const = 0;
  // Local plus borrowed positions.
  virtual int32_t capacity_tokens() const = 0;
  // Starts one layer for the request's `positions` (ascending) this step:
  // `queries` [tokens][num_heads][head_dim], `keys`/`values` [tokens][kv_dim]
  // (only rows of borrowed positions are sent). Does not wait for answers.
  virtual void Send(int layer, std::span<const int32_t> positions, const float* queries, const float* keys,
                    const float* values) = 0;
  // Waits for the partials of the last Send, merged over every lender, into
  // `out` ([tokens * num_heads] entries, reset by the callee). On failure the
  // request cannot go on: `out` holds empty partials and status() says why.
  virtual void Receive(AttentionPartials& out) = 0;
  // OK until a lender failed or went away.
  virtual absl::Status status() const = 0;
};

// One layer of one step on a lender, from the owner's message.
struct LentAttentionInput {
  int layer = 0;
  int32_t first_position = 0;            // the lease's first position
  std::span<const int32_t> positions;    // query positions
  std::span<const float> queries;        // [positions][num_heads][head_dim]
  std::span<const int32_t> kv_positions; // new K/V, each inside the lease
  std::span<const float> keys;           // [kv_positions][kv_dim]
  std::span<const float> values;
};

// Writes the new keys and values into the lent `blocks` (which hold
// positions [first_position, first_position + blocks.size() * block_size))
// and computes, for every query and head, the partial over the lease's
// positions up to and including the query's own. InvalidArgument (nothing
// written) for sizes that do not match the model, a layer out of range, or a
// K/V position outside the lease.
absl::Status AttendLentBlocks(KvCache& kv, std::span<const int32_t> blocks, const ModelConfig& config,
                              const LentAttentionInput& input, AttentionPartials& out);

}  // namespace ferry
