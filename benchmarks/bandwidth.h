// Memory read bandwidth of this machine: the floor decode throughput is
// measured against.
#pragma once

#include <cstddef>

namespace ferry::bench {

// Best-of-`runs` read bandwidth in GB/s (1e9 bytes/s) summing a `bytes`-sized
// float array with `threads` threads.
double MeasureReadBandwidthGBs(int threads, size_t bytes = size_t{1} << 30, int runs = 7);
// Best-of-`runs` memcpy rate of one thread in GB/s of bytes copied, between
// two `bytes`-sized buffers: the limit of a copy out of shared memory.
double MeasureCopyBandwidthGBs(size_t bytes = size_t{256} << 20, int runs = 5);

}  // namespace ferry::bench
