// Knobs for rendering a chat template: the clock behind strftime_now() and
// the limits that stop hostile templates.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "common/clock.h"

namespace ferry::chat_template {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;
  // Bounds the size of any one string or list a template builds.
  size_t max_string_bytes = size_t{64} << 20;
  size_t max_list_items = 1 << 20;
  // Nested macro calls (a macro calling itself).
  int max_call_depth = 100;
  // Work units: one per statement or expression evaluated, plus one per 16
  // bytes of string built. Ends infinite or runaway rendering.
  int64_t max_steps = 50'000'000;
};

struct RenderOptions {
  // Read by strftime_now(); null means the real clock.
  const Clock* clock = nullptr;
  absl::TimeZone time_zone = absl::LocalTimeZone();
  RenderLimits limits;
};

}  // namespace ferry::chat_template
