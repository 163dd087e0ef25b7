#include "cuda/device_info.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <string>

namespace ferry::cuda {

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
}

std::string DescribeDevices() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("none (") + cudaGetErrorString(err) + ")";
  }
  if (n == 0) return "none";
  std::string out = std::to_string(n) + " (";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s%d: %s, sm_%d%d, %.1f GiB", i ? "; " : "", i, prop.name,
                  prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
    out += buf;
  }
  return out + ")";
}

}  // namespace ferry::cuda
