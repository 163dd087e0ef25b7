// The checks every generation input passes before it reaches an engine: the
// request as a client (through the gateway or scheduler) sent it, or a
// paused sample's state as a peer worker sent it in a migration. Anything
// that fails is an InvalidArgument naming the field; nothing past here has
// to guard against out-of-range ids, parameters or resume state.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/engine_types.h"

namespace ferry {

struct InputLimits {
  int vocab_size = 0;
  int64_t max_model_len = 0;  // prompt + max_tokens
  int block_size = 16;
  int64_t num_kv_blocks = 0;  // the worker's KV cache; 0: not checked
};

// Everything but DistAttention's borrowed blocks (the engine checks those
// against its lenders).
absl::Status ValidateGenerateInput(const GenerateInput& input, const InputLimits& limits);

}  // namespace ferry
