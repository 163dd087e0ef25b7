#include "benchmarks/loadgen/arrivals.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace ferry::loadgen {

absl::StatusOr<std::vector<double>> ArrivalTimes(const ArrivalOptions& options, int n) {
  const double rate = options.request_rate;
  if (std::isnan(rate) || rate <= 0)
    return absl::InvalidArgumentError(absl::StrCat("request rate must be > 0, got ", rate));
  if (!(options.burstiness > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("burstiness must be > 0, got ", options.burstiness));
  }
  if (!(options.ramp_up_s >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ramp-up must be >= 0 seconds, got ", options.ramp_up_s));
  }
  std::vector<double> times(n > 0 ? n : 0, 0.0);
  if (std::isinf(rate)) return times;
  std::mt19937_64 rng(options.seed);
  std::gamma_distribution<double> gap(options.burstiness, 1.0 / (rate * options.burstiness));
  // Draw the process at the full rate in "work" time s, then map it through
  // the inverse of the cumulative rate, so the ramp keeps the burstiness:
  // Lambda(t) = R t^2 / (2 ramp) for t < ramp, R (t - ramp / 2) after.
  const double ramp = options.ramp_up_s;
  double s = 0;
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += gap(rng);
    times[i] = (ramp > 0 && s < ramp / 2) ? std::sqrt(2 * ramp * s) : s + ramp / 2;
  }
  return times;
}

}  // namespace ferry::loadgen
