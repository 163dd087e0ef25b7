// The CUDA backend: weights and the paged KV cache in device memory (bf16,
// fp16 or fp32), a residual stream in fp32, cuBLASLt GEMMs with fused Q/K/V
// and gate/up projections, and the fused kernels of cuda/ in between.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/strings.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "cuda/api.h"
#include "engine/backend.h"

namespace ferry {
namespace {

absl::Status Check(const cuda::Error& e, std::string_view what) {
  if (e.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuda: ", Sv(what), ": ", Sv(e)));
}

absl::StatusOr<cuda::DType> ParseDType(const std::string& s) {
  if (s == "auto" || s == "bfloat16" || s == "bf16") return cuda::DType::kBF16;
  if (s == "float16" || s == "f16" || s == "half") return cuda::DType::kF16;
  if (s == "float32" || s == "f32" || s == "float") return cuda::DType::kF32;
  return absl::InvalidArgumentError(absl::StrCat("unknown --dtype '", s, "' (auto, bfloat16, float16, float32)"));
}

absl::StatusOr<int> ParseDevice(const std::string& s) {
  if (s == "cuda") return 0;
  int n = 0;
  if (s.size() > 5 && s.rfind("cuda:", 0) == 0 && absl::SimpleAtoi(s.substr(5), &n) && n >= 0) return n;
  return absl::InvalidArgumentError(absl::StrCat("bad --device '", s, "' (cuda or cuda:N)"));
}

class CudaBackend final : public ForwardBackend {
 public:
  CudaBackend(const Model& model, cuda::DType dtype, int device)
      : model_(model), c_(model.config()), dt_(dtype), device_(device) {}

  ~CudaBackend() override {
    if (stream_ != nullptr) cuda::StreamSynchronize(stream_);
    if (copy_stream_ != nullptr) cuda::StreamSynchronize(copy_stream_);
    {
      absl::MutexLock lock(&copy_mu_);
      for (auto& [handle, base] : peer_pools_) cuda::IpcCloseMemHandle(base);
    }
    gemm_.reset();
    for (void* p : allocations_) cuda::Free(p);
    cuda::StreamDestroy(copy_stream_);
    cuda::StreamDestroy(stream_);
  }

  absl::Status Init(const EngineOptions& o) {
    FERRY_RETURN_IF_ERROR(Check(cuda::SetDevice(device_), "set device"));
    graphs_enabled_ = o.cuda_graphs;
    FERRY_RETURN_IF_ERROR(Check(cuda::GetDeviceProps(device_, &props_), "device properties"));
    if (!cuda::SupportedHeadDim(c_.head_dim)) {
      return absl::UnimplementedError(absl::StrCat("the cuda backend has no kernels for head_dim ", c_.head_dim));
    }
    FERRY_RETURN_IF_ERROR(Check(cuda::StreamCreate(&stream_), "stream"));
    FERRY_RETURN_IF_ERROR(Check(cuda::StreamCreate(&copy_stream_), "copy stream"));
    FERRY_RETURN_IF_ERROR(Check(cuda::Gemm::Create(&gemm_), "cuBLASLt"));
    FERRY_RETURN_IF_ERROR(UploadWeights());

    max_tokens_ = std::max(o.max_num_batched_tokens, 1);
    // A row a sequence, and room for a prompt's logprobs (Engine: prompt
    // rows a step).
    max_rows_ = std::min(max_tokens_, std::max(o.max_num_seqs, 1) + 256);
    max_model_len_ = std::max(o.max_model_len, 1);
    FERRY_RETURN_IF_ERROR(AllocateScratch(o.block_size));

    shape_.num_layers = c_.num_layers;
    shape_.num_kv_heads = c_.num_kv_heads;
    shape_.head_dim = c_.head_dim;
    shape_.block_size = o.block_size;
    block_bytes_ = int64_t{c_.num_layers} * 2 * o.block_size * c_.kv_dim() * int64_t(cuda::DTypeSize(dt_));
    int64_t bytes = o.kv_cache_bytes;
    if (bytes == 0) {
      size_t free_bytes = 0, total = 0;
      FERRY_RETURN_IF_ERROR(Check(cuda::MemGetInfo(&free_bytes, &total), "memory info"));
      const double fraction = o.kv_cache_fraction > 0 ? o.kv_cache_fraction : 0.9;
      bytes = static_cast<int64_t>(fraction * double(free_bytes));
    }
    shape_.num_blocks = bytes / block_bytes_;
    if (shape_.num_blocks < 1) {
      return absl::ResourceExhaustedError(absl::StrCat("KV memory of ", bytes, " bytes holds no block (one block is ",
                                                       block_bytes_, " bytes)"));
    }
    kv_.base = Alloc(size_t(shape_.num_blocks) * block_bytes_, &init_status_);
    FERRY_RETURN_IF_ERROR(init_status_);
    kv_.num_layers = c_.num_layers;
    kv_.num_kv_heads = c_.num_kv_heads;
    kv_.head_dim = c_.head_dim;
    kv_.block_size = o.block_size;
    copy_staging_.resize(static_cast<size_t>(block_bytes_));
    return absl::OkStatus();
  }

  std::string Describe() const override {
    return absl::StrCat("cuda:", device_, " (", props_.name, ", ", cuda::DTypeName(dt_), ")");
  }
  const KvCacheShape& kv_shape() const override { return shape_; }
  int64_t kv_bytes_per_block() const override { return block_bytes_; }
  KvCache* host_kv() override { return nullptr; }

  void CopyBlocks(std::span<const BlockCopy> copies) override {
    if (copies.empty()) return;
    for (const BlockCopy& c : copies) {
      char* base = static_cast<char*>(kv_.base);
      cuda::CopyOnDevice(base + int64_t{c.dst} * block_bytes_, base + int64_t{c.src} * block_bytes_, block_bytes_,
                         stream_);
    }
    // Done before returning, like Forward: host copies of blocks (below) run
    // on their own stream and rely on nothing being pending on stream_.
    cuda::StreamSynchronize(stream_);
  }

  // The device cache uses the canonical block layout (cuda::KvLayout: the
  // RoPE/KV-write kernel and the attention kernels address a block as
  // [layer][k|v][slot][kv_head][head_dim]), so a block converts element by
  // element; only the dtype differs.
  absl::Status ReadKvBlockF32(int32_t block, std::span<float> out) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, out.size_bytes(), shape_.bytes_per_block()));
    absl::MutexLock lock(&copy_mu_);
    FERRY_RETURN_IF_ERROR(CopyBlockToStaging(block));
    cuda::ConvertToF32(dt_, copy_staging_.data(), out.size(), out.data());
    return absl::OkStatus();
  }
  absl::Status WriteKvBlockF32(int32_t block, std::span<const float> in) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, in.size_bytes(), shape_.bytes_per_block()));
    absl::MutexLock lock(&copy_mu_);
    cuda::ConvertFromF32(dt_, in.data(), in.size(), copy_staging_.data());
    return CopyStagingToBlock(block);
  }
  absl::Status ReadKvBlock(int32_t block, std::span<std::byte> out) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, out.size(), block_bytes_));
    absl::MutexLock lock(&copy_mu_);
    FERRY_RETURN_IF_ERROR(CopyBlockToStaging(block));
    std::memcpy(out.data(), copy_staging_.data(), out.size());
    return absl::OkStatus();
  }
  absl::Status WriteKvBlock(int32_t block, std::span<const std::byte> in) override {
    FERRY_RETURN_IF_ERROR(CheckBlockCopy(block, in.size(), block_bytes_));
    absl::MutexLock lock(&copy_mu_);
    std::memcpy(copy_staging_.data(), in.data(), in.size());
    return CopyStagingToBlock(block);
  }

  absl::Status Forward(const ForwardBatch& b, float* logits) override {
    absl::Status s = ForwardOnStream(b, logits);
    // A step that failed half way may have left kernels queued; host copies
    // of blocks rely on nothing being pending on stream_ between steps.
    if (!s.ok()) cuda::StreamSynchronize(stream_);
    return s;
  }

  bool samples_on_device() const override { return true; }
  int64_t max_logits_rows() const override { return max_rows_; }
  absl::Status ForwardAndSample(const ForwardBatch& b, std::span<const RowSampling> rows,
                                std::span<int32_t> tokens) override {
    absl::Status s = SampleOnStream(b, rows, tokens);
    if (!s.ok()) cuda::StreamSynchronize(stream_);
    return s;
  }

 private:
  // Queues the step's kernels up to the logits (fp32 rows in logits_).
  absl::Status EnqueueStep(const ForwardBatch& b) {
    FERRY_RETURN_IF_ERROR(ValidateForwardBatch(b, c_, shape_));
    const int n = b.num_tokens();
    const int rows = static_cast<int>(b.logits_indices.size());
    if (n > max_tokens_) {
      return absl::InvalidArgumentError(absl::StrCat("batch of ", n, " tokens exceeds the cuda backend's ",
                                                     max_tokens_, " (--max-num-batched-tokens)"));
    }
    FERRY_RETURN_IF_ERROR(UploadBatch(b));
    if (graphs_enabled_ && num_tiles_ == 0) return RunAsGraph(n, rows, b.num_seqs());
    return Enqueue(n, rows);
  }

  absl::Status ForwardOnStream(const ForwardBatch& b, float* logits) {
    FERRY_RETURN_IF_ERROR(EnqueueStep(b));
    const int rows = static_cast<int>(b.logits_indices.size());
    if (rows > 0) {
      FERRY_RETURN_IF_ERROR(Check(
          cuda::CopyToHost(logits, logits_, size_t(rows) * c_.vocab_size * sizeof(float), stream_), "logits copy"));
    }
    return Check(cuda::StreamSynchronize(stream_), "step");
  }

  // The step, then one sampling kernel over its logits rows; only the token
  // ids come back (4 bytes a row instead of the vocabulary's fp32 logits).
  absl::Status SampleOnStream(const ForwardBatch& b, std::span<const RowSampling> rows,
                              std::span<int32_t> tokens) {
    FERRY_RETURN_IF_ERROR(CheckSamplingRows(b, rows, tokens));
    const size_t n = b.logits_indices.size();
    FERRY_RETURN_IF_ERROR(EnqueueStep(b));
    if (n == 0) return Check(cuda::StreamSynchronize(stream_), "step");
    // Parameters in one upload: [temperature][top_k][top_p][uniform], n each.
    sample_host_.resize(4 * n);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&sample_host_[i], &rows[i].temperature, sizeof(float));
      std::memcpy(&sample_host_[n + i], &rows[i].top_k, sizeof(int32_t));
      std::memcpy(&sample_host_[2 * n + i], &rows[i].top_p, sizeof(float));
      std::memcpy(&sample_host_[3 * n + i], &rows[i].uniform, sizeof(float));
    }
    FERRY_RETURN_IF_ERROR(Check(
        cuda::CopyToDevice(sample_dev_, sample_host_.data(), sample_host_.size() * sizeof(int32_t), stream_),
        "sampling parameters"));
    cuda::SampleParams p;
    p.temperature = reinterpret_cast<const float*>(sample_dev_);
    p.top_k = sample_dev_ + n;
    p.top_p = reinterpret_cast<const float*>(sample_dev_ + 2 * n);
    p.uniform = reinterpret_cast<const float*>(sample_dev_ + 3 * n);
    int32_t* out = sample_dev_ + 4 * size_t(max_rows_);
    FERRY_RETURN_IF_ERROR(
        Check(cuda::LaunchSample(logits_, static_cast<int>(n), c_.vocab_size, p, out, stream_), "sampling"));
    FERRY_RETURN_IF_ERROR(
        Check(cuda::CopyToHost(tokens.data(), out, n * sizeof(int32_t), stream_), "sampled tokens copy"));
    return Check(cuda::StreamSynchronize(stream_), "step");
  }

  absl::Status CheckBlockCopy(int32_t block, size_t bytes, int64_t want) const {
    if (block < 0 || block >= shape_.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV block ", block, " out of range"));
    }
    if (static_cast<int64_t>(bytes) != want) {
      return absl::InvalidArgumentError(absl::StrCat("KV block copy of ", bytes, " bytes, blocks are ", want));
    }
    return absl::OkStatus();
  }

  // CUDA IPC: the KV allocation's handle, made once.
  std::optional<DeviceKvPool> ExportDeviceKvPool() override {
    absl::MutexLock lock(&copy_mu_);
    if (!exported_.has_value()) {
      DeviceKvPool pool;
      pool.kind = "cuda-ipc";
      if (!cuda::SetDevice(device_).empty() || !cuda::IpcGetMemHandle(kv_.base, &pool.handle).empty()) {
        exported_ = DeviceKvPool{};  // kind empty: none to share
      } else {
        pool.dtype = cuda::DTypeName(dt_);
        pool.bytes_per_block = block_bytes_;
        pool.num_blocks = shape_.num_blocks;
        exported_ = std::move(pool);
      }
    }
    if (exported_->kind.empty()) return std::nullopt;
    return exported_;
  }

  absl::Status OpenDeviceKvPool(const DeviceKvPool& peer) override {
    absl::MutexLock lock(&copy_mu_);
    return OpenPeer(peer).status();
  }

  absl::Status CopyFromDeviceKvPool(const DeviceKvPool& peer, std::span<const int32_t> src,
                                    std::span<const int32_t> dst) override {
    if (src.size() != dst.size()) {
      return absl::InvalidArgumentError(absl::StrCat(src.size(), " source blocks for ", dst.size(), " destinations"));
    }
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] < 0 || src[i] >= peer.num_blocks || dst[i] < 0 || dst[i] >= shape_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("device block copy ", src[i], " -> ", dst[i], " out of range"));
      }
    }
    absl::MutexLock lock(&copy_mu_);
    FERRY_ASSIGN_OR_RETURN(const char* base, OpenPeer(peer));
    // On copy_stream_, as the host copies: a reserved block is read by no
    // step until the request resumes, after this returns.
    char* own = static_cast<char*>(kv_.base);
    for (size_t i = 0; i < src.size(); ++i) {
      FERRY_RETURN_IF_ERROR(Check(cuda::CopyOnDevice(own + int64_t{dst[i]} * block_bytes_,
                                                     base + int64_t{src[i]} * block_bytes_, block_bytes_, copy_stream_),
                                  "KV block copy from a peer"));
    }
    return Check(cuda::StreamSynchronize(copy_stream_), "KV block copy from a peer");
  }

  // Block copies go through copy_stream_, not stream_, so that a read from
  // another thread never queues behind (or into a graph capture of) a step.
  // Nothing needs ordering against stream_: a block read was written by a
  // step that has finished (Forward and CopyBlocks synchronize before they
  // return), and a block written is read by a later step only. The caller
  // holds copy_mu_; the calling thread's current device is set first, as it
  // may be an RPC thread.
  absl::Status CopyBlockToStaging(int32_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(copy_mu_) {
    FERRY_RETURN_IF_ERROR(Check(cuda::SetDevice(device_), "set device"));
    const char* src = static_cast<const char*>(kv_.base) + int64_t{block} * block_bytes_;
    FERRY_RETURN_IF_ERROR(
        Check(cuda::CopyToHost(copy_staging_.data(), src, block_bytes_, copy_stream_), "KV block copy out"));
    return Check(cuda::StreamSynchronize(copy_stream_), "KV block copy out");
  }
  absl::Status CopyStagingToBlock(int32_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(copy_mu_) {
    FERRY_RETURN_IF_ERROR(Check(cuda::SetDevice(device_), "set device"));
    char* dst = static_cast<char*>(kv_.base) + int64_t{block} * block_bytes_;
    FERRY_RETURN_IF_ERROR(
        Check(cuda::CopyToDevice(dst, copy_staging_.data(), block_bytes_, copy_stream_), "KV block copy in"));
    return Check(cuda::StreamSynchronize(copy_stream_), "KV block copy in");
  }

  // A peer's KV allocation, opened once and kept until the backend goes.
  absl::StatusOr<const char*> OpenPeer(const DeviceKvPool& peer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(copy_mu_) {
    if (peer.kind != "cuda-ipc" || peer.dtype != cuda::DTypeName(dt_) || peer.bytes_per_block != block_bytes_ ||
        peer.num_blocks <= 0) {
      return absl::FailedPreconditionError(absl::StrCat("a peer's ", peer.kind, " KV pool of ", peer.dtype,
                                                        " blocks of ", peer.bytes_per_block, " bytes does not fit ",
                                                        cuda::DTypeName(dt_), " blocks of ", block_bytes_, " bytes"));
    }
    if (auto it = peer_pools_.find(peer.handle); it != peer_pools_.end()) return static_cast<const char*>(it->second);
    if (exported_.has_value() && exported_->handle == peer.handle) {
      return absl::FailedPreconditionError("the peer's KV pool is this backend's own");
    }
    if (peer.pid == 0 || peer.pid == getpid()) {
      return absl::FailedPreconditionError("CUDA IPC opens only another process's KV pool");
    }
    FERRY_RETURN_IF_ERROR(Check(cuda::SetDevice(device_), "set device"));
    void* base = nullptr;
    if (cuda::Error e = cuda::IpcOpenMemHandle(peer.handle, &base); !e.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("cuda: opening a peer's KV pool: ", Sv(e)));
    }
    peer_pools_.emplace(peer.handle, base);
    return static_cast<const char*>(base);
  }

  // Decode steps of one shape replay one captured graph: a shape seen once
  // runs eagerly (plans and kernel attributes get set up), the second time
  // it is captured. Everything a graph reads sits at fixed device addresses
  // that depend only on the shape (the key).
  absl::Status RunAsGraph(int n, int rows, int seqs) {
    std::vector<int> key = {n, rows, seqs, num_decode_rows_};
    const int step = std::min(decode_rows_cap_, 1024);
    for (int r = 0; r < num_decode_rows_; r += step) {
      cuda::DecodeSplitPlan plan = cuda::PlanDecodeAttention(std::min(step, num_decode_rows_ - r), c_.num_heads,
                                                             c_.num_kv_heads, max_context_, props_.sm_count);
      key.push_back(plan.splits);
      key.push_back(plan.chunk);
    }
    auto it = graphs_.find(key);
    if (it != graphs_.end() && it->second != nullptr) {
      return Check(it->second->Launch(stream_), "graph launch");
    }
    if (it == graphs_.end() || uncapturable_.contains(key)) {
      if (it == graphs_.end()) graphs_.emplace(key, nullptr);
      return Enqueue(n, rows);
    }
    if (graphs_.size() > 512) graphs_.clear();  // shapes come and go; keep the set bounded
    auto graph = std::make_unique<cuda::Graph>();
    FERRY_RETURN_IF_ERROR(Check(graph->BeginCapture(stream_), "graph capture"));
    absl::Status s = Enqueue(n, rows);
    cuda::Error end = graph->EndCapture(stream_);
    if (!s.ok() || !end.empty()) {
      cuda::LastError();
      uncapturable_.insert(key);
      Logger("engine")->warn("cuda: a decode step could not be captured as a graph ({}); running it eagerly",
                             s.ok() ? end : std::string(s.message()));
      return Enqueue(n, rows);
    }
    cuda::Graph* g = graph.get();
    graphs_[key] = std::move(graph);
    return Check(g->Launch(stream_), "graph launch");
  }

  // Every kernel of a step up to the logits, on the stream.
  absl::Status Enqueue(int n, int rows) {
    const int h = c_.hidden_size, qd = c_.q_dim(), kvd = c_.kv_dim(), ff = c_.intermediate_size;
    const int qkv_n = qd + 2 * kvd;
    void* s = stream_;
    FERRY_RETURN_IF_ERROR(Check(cuda::LaunchEmbedding(dt_, embedding_, d_tokens_, n, h, residual_, s), "embedding"));
    for (int l = 0; l < c_.num_layers; ++l) {
      const DeviceLayer& L = layers_[l];
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchAddRmsNorm(dt_, residual_, l == 0 ? nullptr : proj_, L.attn_norm,
                                                         nullptr, n, h, c_.rms_norm_eps, xn_, s),
                                  "attention norm"));
      FERRY_RETURN_IF_ERROR(Check(gemm_->Run(dt_, dt_, xn_, L.wqkv, L.bqkv, qkv_, n, qkv_n, h, s), "qkv gemm"));
      cuda::RopeKvParams rp;
      rp.qkv = qkv_;
      rp.q_out = q_;
      rp.kv = kv_;
      rp.layer = l;
      rp.num_tokens = n;
      rp.num_heads = c_.num_heads;
      rp.positions = d_positions_;
      rp.token_seq = d_token_seq_;
      rp.block_indptr = d_indptr_;
      rp.block_indices = d_indices_;
      rp.inv_freq = inv_freq_;
      rp.rope_dim = c_.rope_dim;
      rp.interleaved = c_.rope_style == RopeStyle::kInterleaved;
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchRopeKvWrite(dt_, rp, s), "rope"));
      FERRY_RETURN_IF_ERROR(Attention(l));
      FERRY_RETURN_IF_ERROR(Check(gemm_->Run(dt_, dt_, attn_, L.wo, nullptr, proj_, n, h, qd, s), "o gemm"));
      FERRY_RETURN_IF_ERROR(Check(
          cuda::LaunchAddRmsNorm(dt_, residual_, proj_, L.ffn_norm, nullptr, n, h, c_.rms_norm_eps, xn_, s),
          "mlp norm"));
      FERRY_RETURN_IF_ERROR(Check(gemm_->Run(dt_, dt_, xn_, L.wgu, nullptr, gu_, n, 2 * ff, h, s), "gate/up gemm"));
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchSwiGlu(dt_, gu_, n, ff, act_, s), "swiglu"));
      FERRY_RETURN_IF_ERROR(Check(gemm_->Run(dt_, dt_, act_, L.wdown, nullptr, proj_, n, h, ff, s), "down gemm"));
    }
    if (rows > 0) {
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchAddRmsNorm(dt_, residual_, proj_, final_norm_, d_logit_rows_, rows, h,
                                                         c_.rms_norm_eps, xn_, s),
                                  "final norm"));
      FERRY_RETURN_IF_ERROR(Check(
          gemm_->Run(dt_, cuda::DType::kF32, xn_, output_, nullptr, logits_, rows, c_.vocab_size, h, s), "logits"));
    }
    return absl::OkStatus();
  }

  struct DeviceLayer {
    void* wqkv = nullptr;
    void* bqkv = nullptr;
    void* wo = nullptr;
    void* wgu = nullptr;
    void* wdown = nullptr;
    float* attn_norm = nullptr;
    float* ffn_norm = nullptr;
  };

  void* Alloc(size_t bytes, absl::Status* status) {
    void* p = nullptr;
    cuda::Error e = cuda::Malloc(&p, bytes);
    if (!e.empty()) {
      *status = absl::ResourceExhaustedError(absl::StrCat("cuda:", device_, ": ", Sv(e)));
      return nullptr;
    }
    allocations_.push_back(p);
    return p;
  }

  // Uploads matrices stacked by rows, converted to the backend dtype.
  absl::StatusOr<void*> UploadStacked(std::initializer_list<const cpu::WeightMatrix*> parts) {
    int64_t rows = 0, cols = parts.begin()[0]->cols;
    for (const cpu::WeightMatrix* w : parts) {
      if (w->cols != cols) return absl::InternalError("stacked matrices differ in width");
      rows += w->rows;
    }
    const size_t es = cuda::DTypeSize(dt_);
    std::vector<char> host(size_t(rows) * cols * es);
    std::vector<float> row(cols);
    int64_t r = 0;
    for (const cpu::WeightMatrix* w : parts) {
      for (int64_t i = 0; i < w->rows; ++i, ++r) {
        cpu::DequantizeRow(*w, i, row.data());
        cuda::ConvertFromF32(dt_, row.data(), cols, host.data() + size_t(r) * cols * es);
      }
    }
    absl::Status st;
    void* d = Alloc(host.size(), &st);
    FERRY_RETURN_IF_ERROR(st);
    FERRY_RETURN_IF_ERROR(Check(cuda::CopyToDevice(d, host.data(), host.size(), stream_), "weight upload"));
    FERRY_RETURN_IF_ERROR(Check(cuda::StreamSynchronize(stream_), "weight upload"));
    return d;
  }

  absl::StatusOr<float*> UploadF32(const float* src, size_t n) {
    absl::Status st;
    void* d = Alloc(n * sizeof(float), &st);
    FERRY_RETURN_IF_ERROR(st);
    FERRY_RETURN_IF_ERROR(Check(cuda::CopyToDevice(d, src, n * sizeof(float), stream_), "upload"));
    FERRY_RETURN_IF_ERROR(Check(cuda::StreamSynchronize(stream_), "upload"));
    return static_cast<float*>(d);
  }

  absl::Status UploadWeights() {
    const ModelWeights& w = model_.weights();
    FERRY_ASSIGN_OR_RETURN(embedding_, UploadStacked({&w.embedding}));
    if (w.output.data == w.embedding.data && w.output.dtype == w.embedding.dtype) {
      output_ = embedding_;
    } else {
      FERRY_ASSIGN_OR_RETURN(output_, UploadStacked({&w.output}));
    }
    FERRY_ASSIGN_OR_RETURN(final_norm_, UploadF32(w.final_norm, c_.hidden_size));
    std::vector<float> inv = c_.RopeInverseFrequencies();
    FERRY_ASSIGN_OR_RETURN(inv_freq_, UploadF32(inv.data(), inv.size()));
    for (const LayerWeights& L : w.layers) {
      DeviceLayer d;
      FERRY_ASSIGN_OR_RETURN(d.wqkv, UploadStacked({&L.wq, &L.wk, &L.wv}));
      if (L.bq != nullptr) {
        std::vector<float> bias;
        bias.insert(bias.end(), L.bq, L.bq + c_.q_dim());
        bias.insert(bias.end(), L.bk, L.bk + c_.kv_dim());
        bias.insert(bias.end(), L.bv, L.bv + c_.kv_dim());
        std::vector<char> host(bias.size() * cuda::DTypeSize(dt_));
        cuda::ConvertFromF32(dt_, bias.data(), bias.size(), host.data());
        absl::Status st;
        d.bqkv = Alloc(host.size(), &st);
        FERRY_RETURN_IF_ERROR(st);
        FERRY_RETURN_IF_ERROR(Check(cuda::CopyToDevice(d.bqkv, host.data(), host.size(), stream_), "bias"));
      }
      FERRY_ASSIGN_OR_RETURN(d.wo, UploadStacked({&L.wo}));
      FERRY_ASSIGN_OR_RETURN(d.wgu, UploadStacked({&L.w_gate, &L.w_up}));
      FERRY_ASSIGN_OR_RETURN(d.wdown, UploadStacked({&L.w_down}));
      FERRY_ASSIGN_OR_RETURN(d.attn_norm, UploadF32(L.attn_norm, c_.hidden_size));
      FERRY_ASSIGN_OR_RETURN(d.ffn_norm, UploadF32(L.ffn_norm, c_.hidden_size));
      layers_.push_back(d);
    }
    return Check(cuda::StreamSynchronize(stream_), "weights");
  }

  absl::Status AllocateScratch(int block_size) {
    const size_t es = cuda::DTypeSize(dt_);
    const size_t n = max_tokens_;
    const int qkv_n = c_.q_dim() + 2 * c_.kv_dim();
    absl::Status st;
    residual_ = static_cast<float*>(Alloc(n * c_.hidden_size * sizeof(float), &st));
    xn_ = Alloc(n * c_.hidden_size * es, &st);
    qkv_ = Alloc(n * qkv_n * es, &st);
    q_ = Alloc(n * c_.q_dim() * es, &st);
    attn_ = Alloc(n * c_.q_dim() * es, &st);
    proj_ = Alloc(n * c_.hidden_size * es, &st);
    gu_ = Alloc(n * 2 * c_.intermediate_size * es, &st);
    act_ = Alloc(n * c_.intermediate_size * es, &st);
    logits_ = static_cast<float*>(Alloc(size_t(max_rows_) * c_.vocab_size * sizeof(float), &st));
    // Sampling on the device: four parameters and the token of every row.
    sample_dev_ = static_cast<int32_t*>(Alloc(size_t(max_rows_) * 5 * sizeof(int32_t), &st));
    // Integer metadata: tokens, positions, token_seq, logits rows, decode rows
    // (n each), tiles (3 per 64 tokens plus one per sequence), indptr
    // (rows + 1) and block indices (up to every block of every sequence).
    max_indices_ = int64_t{max_rows_} * ((max_model_len_ + block_size - 1) / block_size + 1);
    meta_ints_ = int64_t{5} * n + 3 * (n / 64 + max_rows_ + 1) + max_rows_ + 1 + max_indices_;
    meta_ = static_cast<int32_t*>(Alloc(size_t(meta_ints_) * sizeof(int32_t), &st));
    FERRY_RETURN_IF_ERROR(st);
    // Decode rows: the first token of single-token sequences, or every token
    // where the dtype has no prefill kernel.
    decode_rows_cap_ = cuda::HasPrefillKernel(dt_, c_.head_dim) ? max_rows_ : max_tokens_;
    workspace_bytes_ = cuda::AttentionWorkspaceBytes(std::min(decode_rows_cap_, 1024), c_.num_heads, c_.num_kv_heads,
                                                     c_.head_dim, max_model_len_, props_.sm_count);
    if (workspace_bytes_ > 0) workspace_ = Alloc(workspace_bytes_, &st);
    return st;
  }

  absl::Status UploadBatch(const ForwardBatch& b) {
    const int n = b.num_tokens();
    const int seqs = b.num_seqs();
    host_meta_.clear();
    auto put = [&](std::span<const int32_t> v) {
      const size_t at = host_meta_.size();
      host_meta_.insert(host_meta_.end(), v.begin(), v.end());
      return at;
    };
    std::vector<int32_t> token_seq(n), decode_rows, tiles;
    max_context_ = 0;
    for (int s = 0; s < seqs; ++s) {
      const int q0 = b.query_start[s], q1 = b.query_start[s + 1];
      for (int t = q0; t < q1; ++t) token_seq[t] = s;
      max_context_ = std::max(max_context_, b.seq_lens[s]);
      const bool prefill_kernel = cuda::HasPrefillKernel(dt_, c_.head_dim) && q1 - q0 > 1;
      if (prefill_kernel) {
        for (int t = q0; t < q1; t += 64) {
          tiles.push_back(s);
          tiles.push_back(t);
          tiles.push_back(std::min(t + 64, q1));
        }
      } else {
        for (int t = q0; t < q1; ++t) decode_rows.push_back(t);
      }
    }
    const size_t o_tokens = put(b.tokens), o_pos = put(b.positions), o_seq = put(token_seq);
    const size_t o_rows = put(b.logits_indices), o_dec = put(decode_rows), o_tiles = put(tiles);
    const size_t o_indptr = put(b.block_indptr), o_indices = put(b.block_indices);
    if (int64_t(host_meta_.size()) > meta_ints_) {
      return absl::InvalidArgumentError("batch metadata exceeds the cuda backend's buffers");
    }
    FERRY_RETURN_IF_ERROR(
        Check(cuda::CopyToDevice(meta_, host_meta_.data(), host_meta_.size() * sizeof(int32_t), stream_), "batch"));
    d_tokens_ = meta_ + o_tokens;
    d_positions_ = meta_ + o_pos;
    d_token_seq_ = meta_ + o_seq;
    d_logit_rows_ = meta_ + o_rows;
    d_decode_rows_ = meta_ + o_dec;
    d_tiles_ = meta_ + o_tiles;
    d_indptr_ = meta_ + o_indptr;
    d_indices_ = meta_ + o_indices;
    num_decode_rows_ = static_cast<int>(decode_rows.size());
    num_tiles_ = static_cast<int>(tiles.size() / 3);
    return absl::OkStatus();
  }

  absl::Status Attention(int layer) {
    cuda::AttentionParams p;
    p.q = q_;
    p.out = attn_;
    p.kv = kv_;
    p.layer = layer;
    p.num_heads = c_.num_heads;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
    p.token_seq = d_token_seq_;
    p.positions = d_positions_;
    p.block_indptr = d_indptr_;
    p.block_indices = d_indices_;
    p.max_context = max_context_;
    p.workspace = workspace_;
    p.workspace_bytes = workspace_bytes_;
    p.sm_count = props_.sm_count;
    if (num_tiles_ > 0) {
      p.tiles = d_tiles_;
      p.num_tiles = num_tiles_;
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchPrefillAttention(dt_, p, stream_), "prefill attention"));
    }
    // Decode rows in launches the workspace can hold.
    const int step = std::min(decode_rows_cap_, 1024);
    for (int r = 0; r < num_decode_rows_; r += step) {
      p.rows = d_decode_rows_ + r;
      p.num_rows = std::min(step, num_decode_rows_ - r);
      FERRY_RETURN_IF_ERROR(Check(cuda::LaunchDecodeAttention(dt_, p, stream_), "decode attention"));
    }
    return absl::OkStatus();
  }

  const Model& model_;
  const ModelConfig& c_;
  cuda::DType dt_;
  int device_;
  cuda::DeviceProps props_;
  void* stream_ = nullptr;
  void* copy_stream_ = nullptr;  // host copies of KV blocks
  absl::Mutex copy_mu_;
  // One block in the device dtype, on its way to or from host memory.
  std::vector<char> copy_staging_ ABSL_GUARDED_BY(copy_mu_);
  // CUDA IPC: this backend's pool as exported (kind empty: cannot be), and
  // the peers' pools opened here, by handle.
  std::optional<DeviceKvPool> exported_ ABSL_GUARDED_BY(copy_mu_);
  std::map<std::string, void*> peer_pools_ ABSL_GUARDED_BY(copy_mu_);
  std::unique_ptr<cuda::Gemm> gemm_;
  std::vector<void*> allocations_;
  absl::Status init_status_;

  void* embedding_ = nullptr;
  void* output_ = nullptr;
  float* final_norm_ = nullptr;
  float* inv_freq_ = nullptr;
  std::vector<DeviceLayer> layers_;

  KvCacheShape shape_;
  cuda::KvLayout kv_;
  int64_t block_bytes_ = 0;

  int max_tokens_ = 0, max_rows_ = 0, max_model_len_ = 0, decode_rows_cap_ = 0;
  float* residual_ = nullptr;
  void *xn_ = nullptr, *qkv_ = nullptr, *q_ = nullptr, *attn_ = nullptr, *proj_ = nullptr, *gu_ = nullptr,
       *act_ = nullptr;
  float* logits_ = nullptr;
  int32_t* sample_dev_ = nullptr;
  std::vector<int32_t> sample_host_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  int32_t* meta_ = nullptr;
  int64_t meta_ints_ = 0, max_indices_ = 0;
  std::vector<int32_t> host_meta_;
  const int32_t *d_tokens_ = nullptr, *d_positions_ = nullptr, *d_token_seq_ = nullptr, *d_logit_rows_ = nullptr,
                *d_decode_rows_ = nullptr, *d_tiles_ = nullptr, *d_indptr_ = nullptr, *d_indices_ = nullptr;
  int num_decode_rows_ = 0, num_tiles_ = 0, max_context_ = 0;
  bool graphs_enabled_ = true;
  std::map<std::vector<int>, std::unique_ptr<cuda::Graph>> graphs_;
  std::set<std::vector<int>> uncapturable_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(const Model& model, const EngineOptions& options) {
  FERRY_ASSIGN_OR_RETURN(int device, ParseDevice(options.device));
  FERRY_ASSIGN_OR_RETURN(cuda::DType dtype, ParseDType(options.dtype));
  const int count = cuda::DeviceCount();
  if (device >= count) {
    return absl::FailedPreconditionError(absl::StrCat("--device ", options.device, ": ",
                                                      count == 0 ? std::string("no CUDA device is visible")
                                                                 : absl::StrCat("only ", count, " CUDA device(s)")));
  }
  auto backend = std::make_unique<CudaBackend>(model, dtype, device);
  FERRY_RETURN_IF_ERROR(backend->Init(options));
  return backend;
}

}  // namespace ferry
