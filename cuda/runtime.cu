// Device memory, streams, events, graphs and host-side dtype conversion.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>

#include "cuda/api.h"
#include "cuda/kernels/common.cuh"

namespace ferry::cuda {
namespace {
cudaStream_t S(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
  }
  return "?";
}

Error SetDevice(int device) { return ErrorOf(cudaSetDevice(device)); }

Error GetDeviceProps(int device, DeviceProps* out) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) return ErrorOf(e);
  out->name = p.name;
  out->sm_count = p.multiProcessorCount;
  out->major = p.major;
  out->minor = p.minor;
  out->total_memory = p.totalGlobalMem;
  out->l2_bytes = p.l2CacheSize;
  return {};
}

Error MemGetInfo(size_t* free_bytes, size_t* total_bytes) { return ErrorOf(cudaMemGetInfo(free_bytes, total_bytes)); }

Error Malloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  if (bytes == 0) return {};
  cudaError_t e = cudaMalloc(ptr, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    *ptr = nullptr;
    return "cannot allocate " + std::to_string(bytes) + " bytes on the device: " + cudaGetErrorString(e);
  }
  return {};
}
void Free(void* ptr) {
  if (ptr != nullptr) cudaFree(ptr);
}
Error CopyToDevice(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return {};
  return ErrorOf(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S(stream)));
}
Error CopyToHost(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return {};
  return ErrorOf(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, S(stream)));
}
Error CopyOnDevice(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return {};
  return ErrorOf(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, S(stream)));
}
Error IpcGetMemHandle(const void* base, std::string* handle) {
  cudaIpcMemHandle_t h;
  if (cudaError_t e = cudaIpcGetMemHandle(&h, const_cast<void*>(base)); e != cudaSuccess) {
    cudaGetLastError();
    return ErrorOf(e);
  }
  handle->assign(reinterpret_cast<const char*>(&h), sizeof(h));
  return {};
}
Error IpcOpenMemHandle(const std::string& handle, void** ptr) {
  *ptr = nullptr;
  cudaIpcMemHandle_t h;
  if (handle.size() != sizeof(h)) return "a CUDA IPC handle has " + std::to_string(sizeof(h)) + " bytes";
  std::memcpy(&h, handle.data(), sizeof(h));
  if (cudaError_t e = cudaIpcOpenMemHandle(ptr, h, cudaIpcMemLazyEnablePeerAccess); e != cudaSuccess) {
    cudaGetLastError();
    *ptr = nullptr;
    return ErrorOf(e);
  }
  return {};
}
void IpcCloseMemHandle(void* ptr) {
  if (ptr != nullptr) cudaIpcCloseMemHandle(ptr);
}
Error DeviceUuid(int device, std::string* uuid) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) return ErrorOf(e);
  uuid->assign(reinterpret_cast<const char*>(&p.uuid), sizeof(p.uuid));
  return {};
}
Error Memset(void* dst, int value, size_t bytes, void* stream) {
  return ErrorOf(cudaMemsetAsync(dst, value, bytes, S(stream)));
}
Error StreamCreate(void** stream) {
  cudaStream_t s;
  Error e = ErrorOf(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  *stream = e.empty() ? s : nullptr;
  return e;
}
void StreamDestroy(void* stream) {
  if (stream != nullptr) cudaStreamDestroy(S(stream));
}
Error StreamSynchronize(void* stream) { return ErrorOf(cudaStreamSynchronize(S(stream))); }
Error DeviceSynchronize() { return ErrorOf(cudaDeviceSynchronize()); }
Error LastError() { return ErrorOf(cudaGetLastError()); }

EventTimer::EventTimer(void* stream) : stream_(stream), start_(nullptr), stop_(nullptr) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  start_ = a;
  stop_ = b;
}
EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}
void EventTimer::Start() { cudaEventRecord(static_cast<cudaEvent_t>(start_), S(stream_)); }
float EventTimer::StopMs() {
  cudaEventRecord(static_cast<cudaEvent_t>(stop_), S(stream_));
  cudaEventSynchronize(static_cast<cudaEvent_t>(stop_));
  float ms = 0;
  cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_));
  return ms;
}

Graph::~Graph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_ != nullptr) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
}
Error Graph::BeginCapture(void* stream) {
  return ErrorOf(cudaStreamBeginCapture(S(stream), cudaStreamCaptureModeThreadLocal));
}
Error Graph::EndCapture(void* stream) {
  cudaGraph_t g = nullptr;
  if (Error e = ErrorOf(cudaStreamEndCapture(S(stream), &g)); !e.empty()) return e;
  graph_ = g;
  cudaGraphExec_t exec = nullptr;
  if (Error e = ErrorOf(cudaGraphInstantiate(&exec, g, 0)); !e.empty()) return e;
  exec_ = exec;
  return {};
}
Error Graph::Launch(void* stream) {
  if (exec_ == nullptr) return "graph not captured";
  return ErrorOf(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), S(stream)));
}

void ConvertFromF32(DType dtype, const float* src, size_t n, void* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      auto* d = static_cast<__half*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = __float2half_rn(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* d = static_cast<__nv_bfloat16*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = __float2bfloat16_rn(src[i]);
      return;
    }
  }
}

void ConvertToF32(DType dtype, const void* src, size_t n, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      auto* s = static_cast<const __half*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = __half2float(s[i]);
      return;
    }
    case DType::kBF16: {
      auto* s = static_cast<const __nv_bfloat16*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = __bfloat162float(s[i]);
      return;
    }
  }
}

}  // namespace ferry::cuda
