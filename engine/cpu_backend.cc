// The CPU backend: LlamaForward over an fp32 KV cache in host memory.
#include <cstring>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend.h"
#include "engine/llama_forward.h"

namespace ferry {
namespace {

class CpuBackend final : public ForwardBackend {
 public:
  CpuBackend(const Model& model, ThreadPool& pool, bool batch_invariant)
      : pool_(pool), forward_(model, pool, batch_invariant) {}

  absl::Status Init(int block_size, int64_t kv_bytes, bool shared) {
    KvCacheShape shape = forward_.KvShape(block_size, 1);
    shape.num_blocks = shape.BlocksFor(kv_bytes);
    if (shape.num_blocks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-cache-memory of ", kv_bytes,
                                                     " bytes holds no block (one block is ",
                                                     shape.bytes_per_block(), " bytes)"));
    }
    FERRY_ASSIGN_OR_RETURN(kv_, KvCache::Create(shape, shared));
    return absl::OkStatus();
  }

  std::string Describe() const override { return absl::StrCat("cpu (", pool_.num_threads(), " threads)"); }
  const KvCacheShape& kv_shape() const override { return kv_->shape(); }
  int64_t kv_bytes_per_block() const override { return kv_->shape().bytes_per_block(); }
  absl::Status Forward(const ForwardBatch& batch, float* logits) override {
    return forward_.Forward(batch, *kv_, logits);
  }
  void CopyBlocks(std::span<const BlockCopy> copies) override { ::ferry::CopyBlocks(*kv_, copies); }
  KvCache* host_kv() override { return kv_.get(); }
  // The host cache is fp32 in the canonical layout already: both kinds of
  // block copy are plain copies.
  absl::Status ReadKvBlockF32(int32_t block, std::span<float> out) override {
    return ReadKvBlock(block, std::as_writable_bytes(out));
  }
  absl::Status WriteKvBlockF32(int32_t block, std::span<const float> in) override {
    return WriteKvBlock(block, std::as_bytes(in));
  }
  absl::Status ReadKvBlock(int32_t block, std::span<std::byte> out) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, out.size()));
    std::memcpy(out.data(), kv_->Block(block), out.size());
    return absl::OkStatus();
  }
  absl::Status WriteKvBlock(int32_t block, std::span<const std::byte> in) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, in.size()));
    std::memcpy(kv_->Block(block), in.data(), in.size());
    return absl::OkStatus();
  }

 private:
  absl::Status CheckBlockCopy(int32_t block, size_t bytes) const {
    if (block < 0 || block >= kv_->num_blocks()) {
      return absl::InvalidArgumentError(absl::StrCat("KV block ", block, " out of range"));
    }
    if (static_cast<int64_t>(bytes) != kv_->shape().bytes_per_block()) {
      return absl::InvalidArgumentError(absl::StrCat("KV block copy of ", bytes, " bytes, blocks are ",
                                                     kv_->shape().bytes_per_block()));
    }
    return absl::OkStatus();
  }

  ThreadPool& pool_;
  LlamaForward forward_;
  std::unique_ptr<KvCache> kv_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCpuBackend(const Model& model, ThreadPool& pool,
                                                                  const EngineOptions& options,
                                                                  int64_t kv_bytes) {
  auto backend = std::make_unique<CpuBackend>(model, pool, options.batch_invariant);
  FERRY_RETURN_IF_ERROR(backend->Init(options.block_size, kv_bytes, options.shared_kv_pool));
  return backend;
}

}  // namespace ferry
