#include "engine/dist_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu/kernels.h"

namespace ferry {

absl::Status AttendLentBlocks(KvCache& kv, std::span<const int32_t> blocks, const ModelConfig& config,
                              const LentAttentionInput& in, AttentionPartials& out) {
  const int nh = config.num_heads, hd = config.head_dim, kv_dim = config.kv_dim();
  const int bs = kv.shape().block_size;
  const int64_t capacity = static_cast<int64_t>(blocks.size()) * bs;
  const int64_t n = static_cast<int64_t>(in.positions.size());
  const int64_t nkv = static_cast<int64_t>(in.kv_positions.size());
  if (in.layer < 0 || in.layer >= config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", in.layer, " is out of range"));
  }
  if (static_cast<int64_t>(in.queries.size()) != n * nh * hd) {
    return absl::InvalidArgumentError("queries do not match the positions and the model's heads");
  }
  if (static_cast<int64_t>(in.keys.size()) != nkv * kv_dim || static_cast<int64_t>(in.values.size()) != nkv * kv_dim) {
    return absl::InvalidArgumentError("keys or values do not match the K/V positions");
  }
  for (int32_t p : in.kv_positions) {
    if (p < in.first_position || p - int64_t{in.first_position} >= capacity) {
      return absl::InvalidArgumentError(absl::StrCat("K/V position ", p, " is outside the lease [",
                                                     in.first_position, ", ", in.first_position + capacity, ")"));
    }
  }
  for (int32_t b : blocks) {
    if (b < 0 || b >= kv.num_blocks()) return absl::InvalidArgumentError("lent block out of range");
  }
  for (int64_t i = 0; i < nkv; ++i) {
    const int64_t rel = in.kv_positions[i] - int64_t{in.first_position};
    const int64_t block = blocks[rel / bs];
    const int slot = static_cast<int>(rel % bs);
    std::memcpy(kv.Keys(block, in.layer) + slot * kv_dim, in.keys.data() + i * kv_dim, kv_dim * sizeof(float));
    std::memcpy(kv.Values(block, in.layer) + slot * kv_dim, in.values.data() + i * kv_dim, kv_dim * sizeof(float));
  }
  out.Reset(n * nh, hd);
  const int group = nh / config.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> scores;
  for (int64_t t = 0; t < n; ++t) {
    // Causal: the lease's positions up to and including the query's.
    const int64_t ctx = std::clamp<int64_t>(int64_t{in.positions[t]} + 1 - in.first_position, 0, capacity);
    scores.resize(ctx);
    for (int h = 0; h < nh; ++h) {
      const int g = h / group;
      const float* q = in.queries.data() + (t * nh + h) * hd;
      for (int64_t p = 0; p < ctx; ++p) {
        scores[p] = cpu::Dot(q, kv.Keys(blocks[p / bs], in.layer) + (p % bs) * kv_dim + g * hd, hd) * scale;
      }
      const int64_t e = t * nh + h;
      WeightsFromScores(scores.data(), ctx, out.max[e], out.sum[e]);
      float* o = out.values_of(e);
      for (int64_t p = 0; p < ctx; ++p) {
        cpu::Axpy(scores[p], kv.Values(blocks[p / bs], in.layer) + (p % bs) * kv_dim + g * hd, hd, o);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry
