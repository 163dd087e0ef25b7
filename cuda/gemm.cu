// GEMMs through cuBLASLt. Weights are row-major [n, k] (output features
// first, as in the model files); in cuBLAS's column-major terms
// yᵀ[n, m] = W[n, k] · xᵀ[k, m], i.e. A = W with op T, B = x with op N.
// The algorithm chosen for each shape is cached.
//
// libcublasLt is opened on first use, not linked: merely loading it costs a
// process about 150 MB of resident memory (measured), which every CPU-only
// worker of a CUDA-enabled build would otherwise pay.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <string>
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

// The cuBLASLt entry points this file uses.
struct LtApi {
  decltype(&::cublasLtCreate) Create = nullptr;
  decltype(&::cublasLtDestroy) Destroy = nullptr;
  decltype(&::cublasLtMatmul) Matmul = nullptr;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic = nullptr;
  decltype(&::cublasLtMatmulDescCreate) MatmulDescCreate = nullptr;
  decltype(&::cublasLtMatmulDescDestroy) MatmulDescDestroy = nullptr;
  decltype(&::cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute = nullptr;
  decltype(&::cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate = nullptr;
  decltype(&::cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute = nullptr;
  decltype(&::cublasLtMatrixLayoutCreate) MatrixLayoutCreate = nullptr;
  decltype(&::cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy = nullptr;
};

#ifndef FERRY_CUDA_LIB_DIR
#define FERRY_CUDA_LIB_DIR ""
#endif

template <class F>
void Load(void* handle, const char* name, F* f, std::string* missing) {
  *f = reinterpret_cast<F>(dlsym(handle, name));
  if (*f == nullptr && missing->empty()) *missing = name;
}

// Loads the library once; an error names what was missing.
Error LoadLt(const LtApi** out) {
  static LtApi api;
  static Error error;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr && FERRY_CUDA_LIB_DIR[0] != '\0') {
      handle = dlopen((std::string(FERRY_CUDA_LIB_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
    }
    if (handle == nullptr) {
      const char* why = dlerror();
      error = "cannot load " + soname + " (cuBLASLt): " + (why != nullptr ? why : "not found");
      return;
    }
    std::string missing;
    Load(handle, "cublasLtCreate", &api.Create, &missing);
    Load(handle, "cublasLtDestroy", &api.Destroy, &missing);
    Load(handle, "cublasLtMatmul", &api.Matmul, &missing);
    Load(handle, "cublasLtMatmulAlgoGetHeuristic", &api.MatmulAlgoGetHeuristic, &missing);
    Load(handle, "cublasLtMatmulDescCreate", &api.MatmulDescCreate, &missing);
    Load(handle, "cublasLtMatmulDescDestroy", &api.MatmulDescDestroy, &missing);
    Load(handle, "cublasLtMatmulDescSetAttribute", &api.MatmulDescSetAttribute, &missing);
    Load(handle, "cublasLtMatmulPreferenceCreate", &api.MatmulPreferenceCreate, &missing);
    Load(handle, "cublasLtMatmulPreferenceDestroy", &api.MatmulPreferenceDestroy, &missing);
    Load(handle, "cublasLtMatmulPreferenceSetAttribute", &api.MatmulPreferenceSetAttribute, &missing);
    Load(handle, "cublasLtMatrixLayoutCreate", &api.MatrixLayoutCreate, &missing);
    Load(handle, "cublasLtMatrixLayoutDestroy", &api.MatrixLayoutDestroy, &missing);
    if (!missing.empty()) error = soname + " lacks " + missing;
  });
  if (!error.empty()) return error;
  *out = &api;
  return {};
}

// The loaded API; only called once LoadLt has succeeded (Gemm::Create).
const LtApi& Lt() {
  const LtApi* api = nullptr;
  LoadLt(&api);
  return *api;
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
      Lt().MatmulDescDestroy(p.desc);
      Lt().MatrixLayoutDestroy(p.a);
      Lt().MatrixLayoutDestroy(p.b);
      Lt().MatrixLayoutDestroy(p.c);
    }
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) Lt().Destroy(handle);
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
    if (Error e = LtError(Lt().MatmulDescCreate(&p.desc, compute, CUDA_R_32F), "desc"); !e.empty()) return e;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    Lt().MatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    Lt().MatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (bias) {
      cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      Lt().MatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
      cudaDataType_t bt = CudaType(dt);
      Lt().MatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    Lt().MatrixLayoutCreate(&p.a, CudaType(dt), k, n, k);   // W as [k, n] column-major
    Lt().MatrixLayoutCreate(&p.b, CudaType(dt), k, m, k);   // x as [k, m] column-major
    Lt().MatrixLayoutCreate(&p.c, CudaType(out), n, m, n);  // y as [n, m] column-major
    cublasLtMatmulPreference_t pref;
    Lt().MatmulPreferenceCreate(&pref);
    size_t ws = kWorkspaceBytes;
    Lt().MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t heur[kCandidates];
    int found = 0;
    cublasStatus_t s =
        Lt().MatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, kCandidates, heur, &found);
    Lt().MatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
      Lt().MatmulDescDestroy(p.desc);
      Lt().MatrixLayoutDestroy(p.a);
      Lt().MatrixLayoutDestroy(p.b);
      Lt().MatrixLayoutDestroy(p.c);
      return "cuBLASLt has no algorithm for a " + std::string(DTypeName(dt)) + " GEMM of m=" +
             std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
    }
    if (bias) Lt().MatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr);
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
          return Lt().Matmul(handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &heur[i].algo,
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
  const LtApi* api = nullptr;
  if (Error e = LoadLt(&api); !e.empty()) return e;
  g->impl_ = new Impl;
  if (Error e = LtError(Lt().Create(&g->impl_->handle), "create"); !e.empty()) return e;
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
    Lt().MatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  }
  const float alpha = 1.0f, beta = 0.0f;
  return LtError(Lt().Matmul(impl_->handle, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                                &p->algo, impl_->workspace, kWorkspaceBytes, static_cast<cudaStream_t>(stream)),
                 "matmul");
}

}  // namespace ferry::cuda
