// Request arrival schedules for `ferry bench`: Poisson, Gamma with a
// burstiness factor (vLLM's meaning), everything at once, and an optional
// linear ramp-up. Pure and seeded, so a schedule is reproducible.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry::loadgen {

struct ArrivalOptions {
  // Mean requests per second once ramped up; infinity sends all at t = 0.
  double request_rate = std::numeric_limits<double>::infinity();
  // Gamma shape of the inter-arrival times: 1 is Poisson, below 1 burstier,
  // above 1 smoother (scale = 1 / (rate * burstiness), as vLLM).
  double burstiness = 1.0;
  // The rate grows linearly from 0 to request_rate over this many seconds.
  double ramp_up_s = 0.0;
  uint64_t seed = 0;
};

// Arrival offsets in seconds from the start, non-decreasing, for n requests.
// InvalidArgument for a rate or burstiness <= 0 or a negative ramp-up.
absl::StatusOr<std::vector<double>> ArrivalTimes(const ArrivalOptions& options, int n);

}  // namespace ferry::loadgen
