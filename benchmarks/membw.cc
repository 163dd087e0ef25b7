// ferry-membw: memory read bandwidth of this machine, summing a 1 GiB float
// array with 1 and 2 threads, best of several runs, in GB/s (1e9 bytes/s).
// It is the floor decode throughput is measured against (BENCHMARKS.md).
#include <algorithm>
#include <cstdio>
#include <thread>

#include "benchmarks/bandwidth.h"

int main() {
  constexpr size_t kBytes = size_t{1} << 30;
  constexpr int kRuns = 7;
  const int max_threads =
      static_cast<int>(std::max(1u, std::min(2u, std::thread::hardware_concurrency())));
  for (int threads = 1; threads <= 2; ++threads) {
    if (threads > max_threads) {
      std::printf("threads=%d skipped (only %d cores)\n", threads, max_threads);
      continue;
    }
    double gbs = ferry::bench::MeasureReadBandwidthGBs(threads, kBytes, kRuns);
    if (gbs <= 0) {
      std::fprintf(stderr, "ferry-membw: cannot allocate %zu bytes\n", kBytes);
      return 1;
    }
    std::printf("threads=%d read bandwidth %.1f GB/s (best of %d passes over %zu MiB)\n", threads, gbs,
                kRuns, kBytes >> 20);
  }
  return 0;
}
