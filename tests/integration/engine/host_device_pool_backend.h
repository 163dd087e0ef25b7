// A backend whose KV pool other backends in this process open and copy
// blocks out of by id, the way CUDA IPC lets GPU workers on one host do: it
// runs the CPU backend, keeps that cache to itself (host_kv() is null, as on
// a device, so the engine offers no shared-memory pool), and exports it as a
// DeviceKvPool of kind "host-test". It drives the engine's and the worker's
// device-pool paths (reservation, chunks by id, blocks past the reservation,
// prefix pulls) on machines without a GPU; only the CUDA calls themselves
// differ.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/backend.h"
#include "engine/engine.h"

namespace ferry::testing {

class HostDevicePoolBackend final : public ForwardBackend {
 public:
  static constexpr const char* kKind = "host-test";

  // An Engine::BackendFactory: a CPU backend of `kv_bytes` of KV wrapped in
  // one of these. `copied`, when given, counts the blocks its engine copies
  // in from peers' pools.
  static Engine::BackendFactory Factory(int64_t kv_bytes, std::atomic<int64_t>* copied = nullptr) {
    return [kv_bytes, copied](const Model& model, ThreadPool& pool,
                              const EngineOptions& options) -> absl::StatusOr<std::unique_ptr<ForwardBackend>> {
      EngineOptions o = options;
      o.shared_kv_pool = false;
      FERRY_ASSIGN_OR_RETURN(std::unique_ptr<ForwardBackend> cpu, CreateCpuBackend(model, pool, o, kv_bytes));
      return std::unique_ptr<ForwardBackend>(new HostDevicePoolBackend(std::move(cpu), copied));
    };
  }

  ~HostDevicePoolBackend() override {
    absl::MutexLock lock(&Registry().mu);
    Registry().pools.erase(handle_);
  }

  std::string Describe() const override { return absl::StrCat(inner_->Describe(), " as ", kKind, " ", handle_); }
  const KvCacheShape& kv_shape() const override { return inner_->kv_shape(); }
  int64_t kv_bytes_per_block() const override { return inner_->kv_bytes_per_block(); }
  absl::Status Forward(const ForwardBatch& batch, float* logits) override { return inner_->Forward(batch, logits); }
  void CopyBlocks(std::span<const BlockCopy> copies) override { inner_->CopyBlocks(copies); }
  KvCache* host_kv() override { return nullptr; }
  absl::Status ReadKvBlockF32(int32_t block, std::span<float> out) override {
    return inner_->ReadKvBlockF32(block, out);
  }
  absl::Status WriteKvBlockF32(int32_t block, std::span<const float> in) override {
    return inner_->WriteKvBlockF32(block, in);
  }
  absl::Status ReadKvBlock(int32_t block, std::span<std::byte> out) override { return inner_->ReadKvBlock(block, out); }
  absl::Status WriteKvBlock(int32_t block, std::span<const std::byte> in) override {
    return inner_->WriteKvBlock(block, in);
  }

  std::optional<DeviceKvPool> ExportDeviceKvPool() override {
    DeviceKvPool pool;
    pool.kind = kKind;
    pool.handle = handle_;
    pool.dtype = "float32";
    pool.bytes_per_block = inner_->kv_bytes_per_block();
    pool.num_blocks = inner_->kv_shape().num_blocks;
    return pool;
  }

  absl::Status OpenDeviceKvPool(const DeviceKvPool& peer) override {
    absl::MutexLock lock(&Registry().mu);
    return OpenLocked(peer).status();
  }

  absl::Status CopyFromDeviceKvPool(const DeviceKvPool& peer, std::span<const int32_t> src,
                                    std::span<const int32_t> dst) override {
    if (src.size() != dst.size()) {
      return absl::InvalidArgumentError(absl::StrCat(src.size(), " source blocks for ", dst.size(), " destinations"));
    }
    // Held across the copies, so the peer cannot go meanwhile.
    absl::MutexLock lock(&Registry().mu);
    if (!opened_.contains(peer.handle)) return absl::FailedPreconditionError("the peer's KV pool was not opened");
    FERRY_ASSIGN_OR_RETURN(HostDevicePoolBackend * from, OpenLocked(peer));
    std::vector<float> block(static_cast<size_t>(kv_shape().floats_per_block()));
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] < 0 || src[i] >= peer.num_blocks || dst[i] < 0 || dst[i] >= kv_shape().num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("device block copy ", src[i], " -> ", dst[i], " out of range"));
      }
      FERRY_RETURN_IF_ERROR(from->inner_->ReadKvBlockF32(src[i], block));
      FERRY_RETURN_IF_ERROR(inner_->WriteKvBlockF32(dst[i], block));
    }
    if (copied_ != nullptr) *copied_ += static_cast<int64_t>(src.size());
    return absl::OkStatus();
  }

 private:
  HostDevicePoolBackend(std::unique_ptr<ForwardBackend> inner, std::atomic<int64_t>* copied)
      : inner_(std::move(inner)), copied_(copied) {
    absl::MutexLock lock(&Registry().mu);
    handle_ = absl::StrCat("pool-", Registry().next++);
    Registry().pools[handle_] = this;
  }

  struct Pools {
    absl::Mutex mu;
    std::map<std::string, HostDevicePoolBackend*> pools;
    int next = 0;
  };
  static Pools& Registry() {
    static Pools* pools = new Pools;
    return *pools;
  }

  absl::StatusOr<HostDevicePoolBackend*> OpenLocked(const DeviceKvPool& peer) {
    if (peer.kind != kKind || peer.dtype != "float32" || peer.bytes_per_block != inner_->kv_bytes_per_block()) {
      return absl::FailedPreconditionError(absl::StrCat("a peer's ", peer.kind, " KV pool of ", peer.dtype,
                                                        " blocks does not fit"));
    }
    if (peer.handle == handle_) return absl::FailedPreconditionError("the peer's KV pool is this backend's own");
    auto it = Registry().pools.find(peer.handle);
    if (it == Registry().pools.end()) return absl::FailedPreconditionError("no such KV pool in this process");
    opened_.insert(peer.handle);
    return it->second;
  }

  std::unique_ptr<ForwardBackend> inner_;
  std::atomic<int64_t>* copied_;
  std::string handle_;
  std::set<std::string> opened_;  // under Registry().mu
};

}  // namespace ferry::testing
