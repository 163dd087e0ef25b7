#include "engine/cpu/blas_gemm.h"

#include <cblas.h>
#include <dlfcn.h>

namespace ferry::cpu {
namespace {

// Looked up at run time because BLAS::BLAS may be a BLAS without the OpenBLAS
// extensions (the reference libblas, or OpenBLAS behind Debian's libblas.so).
void DisableBlasThreading() {
  using SetThreadsFn = void (*)(int);
  auto set_threads =
      reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads != nullptr) set_threads(1);
}

}  // namespace

void SgemmSingleThread(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t m,
                       int64_t n, int64_t k, float* y, int64_t ldy) {
  static const bool threading_disabled = [] {
    DisableBlasThreading();
    return true;
  }();
  (void)threading_disabled;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, x, static_cast<int>(ldx), w, static_cast<int>(ldw), 0.0f,
              y, static_cast<int>(ldy));
}

}  // namespace ferry::cpu
