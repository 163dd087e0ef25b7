// The simulated backend (`--backend sim`): no model math. Each step sleeps
// for the time the cost model gives its shape and produces a token that
// depends only on the previous token and its position, so the same prompt
// always gives the same output. Everything around it is real: the step
// loop, block accounting, the worker's RPCs and the scheduler. For capacity
// planning and tests on machines without the modelled hardware; never the
// default.
#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/backend.h"
#include "engine/sim_cost_model.h"

namespace ferry {
namespace {

class SimBackend final : public ForwardBackend {
 public:
  SimBackend(const Model& model, SimProfile profile, int block_size, int64_t num_blocks)
      : profile_(std::move(profile)), vocab_size_(model.config().vocab_size) {
    const ModelConfig& c = model.config();
    shape_.num_layers = c.num_layers;
    shape_.num_kv_heads = c.num_kv_heads;
    shape_.head_dim = c.head_dim;
    shape_.block_size = block_size;
    shape_.num_blocks = num_blocks;
    for (int32_t id : model.eos_ids()) avoid_.push_back(id);
    for (int id : c.eos_token_ids) avoid_.push_back(id);
  }

  std::string Describe() const override {
    return absl::StrCat("sim:", profile_.name, " (SIMULATED: no model math, step times from the cost model of ",
                        profile_.description, ")");
  }
  const KvCacheShape& kv_shape() const override { return shape_; }
  int64_t kv_bytes_per_block() const override {
    return static_cast<int64_t>(profile_.kv_bytes_per_token) * shape_.block_size;
  }

  absl::Status Forward(const ForwardBatch& batch, float* logits) override {
    const auto start = std::chrono::steady_clock::now();
    FillLogits(batch, logits);
    std::this_thread::sleep_until(start + std::chrono::duration<double>(StepSeconds(profile_, Shape(batch))));
    return absl::OkStatus();
  }

  // Sampling in the backend, as the cuda backend does it on the device, so
  // that the engine's path for it runs (and is simulated) without a GPU.
  bool samples_on_device() const override { return true; }
  absl::Status ForwardAndSample(const ForwardBatch& batch, std::span<const RowSampling> rows,
                                std::span<int32_t> tokens) override {
    const auto start = std::chrono::steady_clock::now();
    FERRY_RETURN_IF_ERROR(CheckSamplingRows(batch, rows, tokens));
    const size_t n = batch.logits_indices.size();
    logits_.resize(n * static_cast<size_t>(vocab_size_));
    FillLogits(batch, logits_.data());
    for (size_t r = 0; r < n; ++r) {
      std::span<const float> row(logits_.data() + r * static_cast<size_t>(vocab_size_),
                                 static_cast<size_t>(vocab_size_));
      tokens[r] = SampleByThresholds(row, rows[r].temperature, rows[r].top_k, rows[r].top_p, rows[r].uniform);
    }
    std::this_thread::sleep_until(start + std::chrono::duration<double>(StepSeconds(profile_, Shape(batch))));
    return absl::OkStatus();
  }

  void CopyBlocks(std::span<const BlockCopy>) override {}
  KvCache* host_kv() override { return nullptr; }

 private:
  static StepShape Shape(const ForwardBatch& batch) {
    StepShape step;
    step.batch_tokens = batch.num_tokens();
    step.num_seqs = batch.num_seqs();
    for (int s = 0; s < batch.num_seqs(); ++s) {
      const int64_t q = batch.query_start[s + 1] - batch.query_start[s];
      const int64_t ctx = batch.seq_lens[s];
      step.kv_tokens += ctx;
      step.attention_pairs += q * std::max<int64_t>(0, ctx - q) + q * (q + 1) / 2;
    }
    return step;
  }

  // One row per logits index: 40 at the row's next token, 0 elsewhere.
  void FillLogits(const ForwardBatch& batch, float* logits) const {
    for (size_t r = 0; r < batch.logits_indices.size(); ++r) {
      const int32_t t = batch.logits_indices[r];
      float* row = logits + r * static_cast<size_t>(vocab_size_);
      std::fill(row, row + vocab_size_, 0.0f);
      row[NextToken(batch.tokens[t], batch.positions[t])] = 40.0f;
    }
  }

  // A fixed function of (previous token, position) that is never an EOS.
  int32_t NextToken(int32_t prev, int32_t position) const {
    uint64_t x = static_cast<uint64_t>(static_cast<uint32_t>(prev)) * 0x9E3779B97F4A7C15ull ^
                 static_cast<uint64_t>(static_cast<uint32_t>(position)) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    for (int tries = 0;; ++tries) {
      const int32_t id = static_cast<int32_t>(x % static_cast<uint64_t>(vocab_size_));
      if (tries > 64 || std::find(avoid_.begin(), avoid_.end(), id) == avoid_.end()) return id;
      x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
  }

  SimProfile profile_;
  int vocab_size_;
  KvCacheShape shape_;
  std::vector<int32_t> avoid_;
  std::vector<float> logits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateSimBackend(const Model& model, const EngineOptions& options) {
  absl::StatusOr<SimProfile> profile = LookupSimProfile(options.sim_profile);
  if (!profile.ok()) return profile.status();
  // The KV cache the modelled device would hold, unless --kv-cache-memory
  // asks for less (in the modelled device's bytes).
  int64_t num_blocks = profile->kv_capacity_tokens / options.block_size;
  if (options.kv_cache_bytes > 0) {
    const double block_bytes = profile->kv_bytes_per_token * options.block_size;
    num_blocks = std::min<int64_t>(num_blocks, static_cast<int64_t>(options.kv_cache_bytes / block_bytes));
  }
  if (num_blocks < 1) return absl::InvalidArgumentError("--kv-cache-memory holds no simulated KV block");
  Logger("engine")->warn("SIMULATED backend sim:{}: tokens are not computed by the model; step times follow {}",
                         profile->name, profile->description);
  return std::make_unique<SimBackend>(model, std::move(*profile), options.block_size, num_blocks);
}

}  // namespace ferry
