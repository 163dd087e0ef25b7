// GEMMs through cuBLASLt. Weights are row-major [n, k] (output features
// first, as in the model files); in cuBLAS's column-major terms
// yᵀ[n, m] = W[n, k] · xᵀ[k, m], i.e. A = W with op T, B = x with op N.
// The algorithm chosen for each shape is cached.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <tuple>

#include "cuda/api.h"
#include "cuda/kernels/common.cuh"

namespace ferry::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int64_t kAutotuneMaxRows = 256;

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

Error LtError(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return std::string("cuBLASLt ") + what + " failed with status " + std::to_string(static_cast<int>(s));
}

}  // namespace

struct Gemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
  };
  using Key = std::tuple<int, int, bool, int64_t, int64_t, int64_t>;
  std::map<Key, Plan> plans;
  std::mutex mu;

  ~Impl() {
    for (auto& [key, p] : plans) {
      cublasLtMatmulDescDestroy(p.desc);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  // Picks the fastest of cuBLASLt's top candidates by timing each on the
  // call's own operands (the heuristic's first choice is often slow for the
  // skinny shapes of decode steps).
  Error GetPlan(DType dt, DType out, bool bias, int64_t m, int64_t n, int64_t k, const void* x, const void* w,
                const void* bias_ptr, void* y, cudaStream_t stream, Plan** result) {
    Key key{static_cast<int>(dt), static_cast<int>(out), bias, m, n, k};
    if (auto it = plans.find(key); it != plans.end()) {
      *result = &it->second;
      return {};
    }
    Plan p;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    if (Error e = LtError(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F), "desc"); !e.empty()) return e;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (bias) {
      cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
      cudaDataType_t bt = CudaType(dt);
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    cublasLtMatrixLayoutCreate(&p.a, CudaType(dt), k, n, k);   // W as [k, n] column-major
    cublasLtMatrixLayoutCreate(&p.b, CudaType(dt), k, m, k);   // x as [k, m] column-major
    cublasLtMatrixLayoutCreate(&p.c, CudaType(out), n, m, n);  // y as [n, m] column-major
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    size_t ws = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t heur[kCandidates];
    int found = 0;
    cublasStatus_t s =
        cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, kCandidates, heur, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatmulDescDestroy(p.desc);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      return "cuBLASLt has no algorithm for a " + std::string(DTypeName(dt)) + " GEMM of m=" +
             std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
    }
    if (bias) cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr);
    int best = 0;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(stream, &capture);
    // Only the decode-sized shapes (a bounded set, each seen again and again)
    // are worth timing; prefill chunks come in every size.
    if (found > 1 && capture == cudaStreamCaptureStatusNone && m <= kAutotuneMaxRows) {
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      float best_ms = 1e30f;
      const float alpha = 1.0f, beta = 0.0f;
      for (int i = 0; i < found; ++i) {
        auto run = [&] {
          return cublasLtMatmul(handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &heur[i].algo,
                                workspace, kWorkspaceBytes, stream);
        };
        if (run() != CUBLAS_STATUS_SUCCESS) continue;
        cudaEventRecord(e0, stream);
        for (int r = 0; r < 5; ++r) run();
        cudaEventRecord(e1, stream);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms < best_ms) best_ms = ms, best = i;
      }
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
    }
    p.algo = heur[best].algo;
    auto [it, inserted] = plans.emplace(key, p);
    *result = &it->second;
    return {};
  }
};

Error Gemm::Create(std::unique_ptr<Gemm>* out) {
  std::unique_ptr<Gemm> g(new Gemm);
  g->impl_ = new Impl;
  if (Error e = LtError(cublasLtCreate(&g->impl_->handle), "create"); !e.empty()) return e;
  if (Error e = Malloc(&g->impl_->workspace, kWorkspaceBytes); !e.empty()) return e;
  *out = std::move(g);
  return {};
}

Gemm::~Gemm() { delete impl_; }

Error Gemm::Run(DType dtype, DType out_dtype, const void* x, const void* w, const void* bias, void* y,
                int64_t m, int64_t n, int64_t k, void* stream) {
  if (m == 0) return {};
  if (out_dtype != dtype && out_dtype != DType::kF32) return "GEMM output must be the input dtype or float32";
  if (SkinnyGemmApplies(dtype, m, k) && (bias == nullptr || out_dtype == dtype)) {
    return LaunchSkinnyGemm(dtype, out_dtype, x, w, bias, y, m, n, k, stream);
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Plan* p = nullptr;
  if (Error e = impl_->GetPlan(dtype, out_dtype, bias != nullptr, m, n, k, x, w, bias, y,
                               static_cast<cudaStream_t>(stream), &p);
      !e.empty()) {
    return e;
  }
  if (bias != nullptr) {
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  }
  const float alpha = 1.0f, beta = 0.0f;
  return LtError(cublasLtMatmul(impl_->handle, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                                &p->algo, impl_->workspace, kWorkspaceBytes, static_cast<cudaStream_t>(stream)),
                 "matmul");
}

}  // namespace ferry::cuda
