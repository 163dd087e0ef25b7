// The CUDA backend's thin C++ API: device memory, streams, cuBLASLt GEMMs and
// the fused kernels of a Llama-family decoder step. Plain C++ (no CUDA
// headers), so the engine can call it from ordinary translation units.
//
// Every Launch* function enqueues work on `stream` (null: the default stream)
// and returns the launch error, if any; kernels run asynchronously. Pointers
// are device pointers unless a comment says otherwise. Element type `dtype`
// applies to every `void*` tensor of a call; norms' weights, RoPE
// frequencies, residuals and logits are fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#if defined(__CUDACC__)
#define FERRY_HOST_DEVICE __host__ __device__
#else
#define FERRY_HOST_DEVICE
#endif

namespace ferry::cuda {

enum class DType { kF32, kF16, kBF16 };
size_t DTypeSize(DType t);
const char* DTypeName(DType t);

// An error message, empty on success.
using Error = std::string;

// --- Runtime ---------------------------------------------------------------

int DeviceCount();
Error SetDevice(int device);
struct DeviceProps {
  std::string name;
  int sm_count = 0;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  size_t l2_bytes = 0;
};
Error GetDeviceProps(int device, DeviceProps* out);
Error MemGetInfo(size_t* free_bytes, size_t* total_bytes);

Error Malloc(void** ptr, size_t bytes);
void Free(void* ptr);
Error CopyToDevice(void* dst, const void* src, size_t bytes, void* stream = nullptr);
Error CopyToHost(void* dst, const void* src, size_t bytes, void* stream = nullptr);
Error CopyOnDevice(void* dst, const void* src, size_t bytes, void* stream = nullptr);
Error Memset(void* dst, int value, size_t bytes, void* stream = nullptr);
// CUDA IPC: `handle` gets the bytes of a handle to the allocation at `base`
// (from Malloc) that another process on this host opens with
// IpcOpenMemHandle (peer access enabled on demand) and closes with
// IpcCloseMemHandle. A process cannot open its own handles.
Error IpcGetMemHandle(const void* base, std::string* handle);
Error IpcOpenMemHandle(const std::string& handle, void** ptr);
void IpcCloseMemHandle(void* ptr);
// The device's 16-byte UUID.
Error DeviceUuid(int device, std::string* uuid);
Error StreamCreate(void** stream);
void StreamDestroy(void* stream);
Error StreamSynchronize(void* stream);
Error DeviceSynchronize();
// The error of the last launch, if any (clears it).
Error LastError();

// Device timing: elapsed milliseconds of work enqueued by `fn` on `stream`.
class EventTimer {
 public:
  explicit EventTimer(void* stream);
  ~EventTimer();
  void Start();
  // Stops, synchronizes and returns milliseconds since Start().
  float StopMs();

 private:
  void* stream_;
  void* start_;
  void* stop_;
};

// CUDA graph capture of work enqueued on a stream, replayed as one launch.
class Graph {
 public:
  ~Graph();
  Error BeginCapture(void* stream);
  Error EndCapture(void* stream);
  Error Launch(void* stream);
  bool valid() const { return exec_ != nullptr; }

 private:
  void* graph_ = nullptr;
  void* exec_ = nullptr;
};

// Converts fp32 host data to `dtype` on the host (dst holds n elements of it).
void ConvertFromF32(DType dtype, const float* src, size_t n, void* dst);
// And back.
void ConvertToF32(DType dtype, const void* src, size_t n, float* dst);

// --- GEMM (cuBLASLt) -------------------------------------------------------

// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]); x, w and bias in `dtype`, y in
// `out_dtype` (dtype or fp32); fp32 accumulation (no TF32 for fp32 inputs).
class Gemm {
 public:
  static Error Create(std::unique_ptr<Gemm>* out);
  ~Gemm();
  Error Run(DType dtype, DType out_dtype, const void* x, const void* w, const void* bias, void* y,
            int64_t m, int64_t n, int64_t k, void* stream);

 private:
  Gemm() = default;
  struct Impl;
  Impl* impl_ = nullptr;
};

// GEMMs of at most kSkinnyGemmMaxRows rows (decode steps) run a kernel of
// ours that streams the weights at memory bandwidth; Gemm::Run picks it.
constexpr int kSkinnyGemmMaxRows = 8;
inline int kVecElems(DType t) { return t == DType::kF32 ? 4 : 8; }
bool SkinnyGemmApplies(DType dtype, int64_t m, int64_t k);
Error LaunchSkinnyGemm(DType dtype, DType out_dtype, const void* x, const void* w, const void* bias, void* y,
                       int64_t m, int64_t n, int64_t k, void* stream);

// --- Kernels -----------------------------------------------------------------

// The paged KV cache: `num_blocks` blocks, each one contiguous range of
// [layer][k|v][slot][kv_head][head_dim] elements of `dtype`; the same layout
// as the CPU cache, so blocks move between backends unchanged in shape.
struct KvLayout {
  void* base = nullptr;
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  FERRY_HOST_DEVICE int64_t block_elems() const { return int64_t{num_layers} * 2 * block_size * num_kv_heads * head_dim; }
  FERRY_HOST_DEVICE int64_t k_offset(int layer) const { return int64_t{layer} * 2 * block_size * num_kv_heads * head_dim; }
  FERRY_HOST_DEVICE int64_t v_offset(int layer) const { return k_offset(layer) + int64_t{block_size} * num_kv_heads * head_dim; }
};

// Head sizes the attention kernels are built for.
bool SupportedHeadDim(int head_dim);

// residual[t] = embedding[tokens[t]] (fp32 [n, hidden]).
Error LaunchEmbedding(DType dtype, const void* embedding, const int32_t* tokens, int n, int hidden,
                      float* residual, void* stream);

// If `delta` is non-null, residual += delta first (delta in dtype); then
// out = RMSNorm(residual) * weight in dtype. `rows` selects residual rows
// (null: row i for output row i).
Error LaunchAddRmsNorm(DType dtype, float* residual, const void* delta, const float* weight,
                       const int32_t* rows, int n, int hidden, float eps, void* out, void* stream);

// residual += delta (the last layer's MLP output).
Error LaunchAddResidual(DType dtype, float* residual, const void* delta, int64_t count, void* stream);

struct RopeKvParams {
  const void* qkv = nullptr;  // [n, q_dim + 2 kv_dim]: q, k, v of each token
  void* q_out = nullptr;      // [n, q_dim] rotated queries
  KvLayout kv;
  int layer = 0;
  int num_tokens = 0;
  int num_heads = 0;
  const int32_t* positions = nullptr;    // [n]
  const int32_t* token_seq = nullptr;    // [n] sequence of each token
  const int32_t* block_indptr = nullptr; // CSR block tables
  const int32_t* block_indices = nullptr;
  const float* inv_freq = nullptr;       // [rope_dim / 2]
  int rope_dim = 0;
  bool interleaved = false;              // pairs (2i, 2i+1) instead of (i, i + d/2)
};
// Rotates q and k by RoPE and writes k and v into their cache slots.
Error LaunchRopeKvWrite(DType dtype, const RopeKvParams& p, void* stream);

// out[t, i] = silu(gate_up[t, i]) * gate_up[t, ff + i].
Error LaunchSwiGlu(DType dtype, const void* gate_up, int n, int ff, void* out, void* stream);

struct AttentionParams {
  const void* q = nullptr;  // [num_tokens, num_heads, head_dim]
  void* out = nullptr;      // [num_tokens, num_heads, head_dim]
  KvLayout kv;
  int layer = 0;
  int num_heads = 0;
  float scale = 0;
  const int32_t* token_seq = nullptr;  // [num_tokens]
  const int32_t* positions = nullptr;  // [num_tokens]: a token attends keys 0..position
  const int32_t* block_indptr = nullptr;
  const int32_t* block_indices = nullptr;

  // Decode (split-KV): the query rows to compute (indices into q), count.
  const int32_t* rows = nullptr;
  int num_rows = 0;
  int max_context = 0;  // upper bound on position + 1 over the rows
  // Scratch for split-KV partials, from AttentionWorkspaceBytes().
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // FlashDecoding++ unified maximum for the softmax (in score units); NaN:
  // each split uses its exact maximum. A split whose scores exceed it by
  // more than the overflow margin falls back to its exact maximum.
  float unified_max = std::numeric_limits<float>::quiet_NaN();
  // Decode kernel variant, for tuning benchmarks and tests: 0 the default
  // (the two-pass kernel with 128/4), 1-3 the
  // two-pass kernel (scores, then values) with 128/4, 256/4, 128/8 threads per
  // CTA / keys in flight per thread, 4-6 the one-pass kernel likewise.
  int decode_variant = 0;

  // Prefill: tiles of 64 query tokens, (sequence, first token index) pairs.
  const int32_t* tiles = nullptr;  // [num_tiles * 3]: seq, token begin, token end
  int num_tiles = 0;
  int sm_count = 132;
};

// Workspace that LaunchDecodeAttention needs for up to `max_rows` rows of
// up to `max_context` keys on a device of `sm_count` multiprocessors.
size_t AttentionWorkspaceBytes(int max_rows, int num_heads, int num_kv_heads, int head_dim, int max_context,
                               int sm_count);
// How LaunchDecodeAttention splits `rows` rows of up to `max_context` keys:
// splits per row and keys per split (what a captured graph depends on).
struct DecodeSplitPlan {
  int splits = 1;
  int chunk = 0;
};
DecodeSplitPlan PlanDecodeAttention(int rows, int num_heads, int num_kv_heads, int max_context, int sm_count);
// Decode attention over paged KV for single query rows: each (row, head
// group) is split along the context so long contexts fill the GPU, and the
// partial softmaxes are merged. Works for any rows (also prefill tokens).
Error LaunchDecodeAttention(DType dtype, const AttentionParams& p, void* stream);
// True where LaunchPrefillAttention has a tensor-core kernel.
bool HasPrefillKernel(DType dtype, int head_dim);
// Causal prefill attention over paged KV for tiles of query tokens of one
// sequence each (a chunk attends to its cached prefix and to itself).
Error LaunchPrefillAttention(DType dtype, const AttentionParams& p, void* stream);

// Sampling on the device. logits: fp32 [rows, vocab].
Error LaunchArgmax(const float* logits, int rows, int vocab, int32_t* out, void* stream);
struct SampleParams {
  const float* temperature = nullptr;  // [rows]; <= 0 means greedy
  const int32_t* top_k = nullptr;      // [rows]; <= 0 means all
  const float* top_p = nullptr;        // [rows]; >= 1 means all
  const float* uniform = nullptr;      // [rows] draws in [0, 1)
};
// Samples from softmax(logits / temperature) restricted to the top-k tokens
// and to the smallest set of most likely tokens whose mass reaches top-p.
Error LaunchSample(const float* logits, int rows, int vocab, const SampleParams& p, int32_t* out,
                   void* stream);

}  // namespace ferry::cuda
