#include "benchmarks/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace ferry::bench {
namespace {

// 16-byte vectors with independent accumulators keep the loop bound by
// memory, not by add latency, even in a baseline build.
using Vec4 = float __attribute__((vector_size(16)));

float SumRange(const Vec4* v, size_t n) {
  Vec4 acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += v[i + j];
  }
  for (; i < n; ++i) acc[0] += v[i];
  Vec4 total = {};
  for (const Vec4& a : acc) total += a;
  return total[0] + total[1] + total[2] + total[3];
}

double TimedPass(const Vec4* v, size_t n, int threads, float* sink) {
  std::vector<float> partial(threads);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) {
    workers.emplace_back([&, t] {
      partial[t] = SumRange(v + n * t / threads, n * (t + 1) / threads - n * t / threads);
    });
  }
  partial[0] = SumRange(v, n / threads);
  for (auto& w : workers) w.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (float p : partial) *sink += p;
  return seconds;
}

}  // namespace

double MeasureReadBandwidthGBs(int threads, size_t bytes, int runs) {
  const size_t n = bytes / sizeof(Vec4);
  auto* v = static_cast<Vec4*>(std::aligned_alloc(64, n * sizeof(Vec4)));
  if (v == nullptr) return 0;
  // Touch every page first so page faults are not timed.
  for (size_t i = 0; i < n; ++i) v[i] = Vec4{1.0f, 2.0f, 3.0f, 4.0f};
  float sink = 0;
  double best = 1e30;
  for (int r = 0; r < runs; ++r) best = std::min(best, TimedPass(v, n, threads, &sink));
  std::free(v);
  volatile float keep = sink;
  (void)keep;
  return n * sizeof(Vec4) / best / 1e9;
}

double MeasureCopyBandwidthGBs(size_t bytes, int runs) {
  std::vector<char> from(bytes, 1), to(bytes, 0);  // both touched before timing
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    from[static_cast<size_t>(r)] = static_cast<char>(r);
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(to.data(), from.data(), bytes);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  volatile char keep = to[static_cast<size_t>(runs - 1)];
  (void)keep;
  return static_cast<double>(bytes) / best / 1e9;
}

}  // namespace ferry::bench
